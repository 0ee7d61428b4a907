"""`raven userstudy prepare|serve|simulate|export|analyze`: the blinded pairwise user study (docs/method.md §10)."""

from __future__ import annotations

import argparse

DATABASE = "judgements.sqlite"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("userstudy", help="blinded A/B user study: prepare, serve, simulate, export, analyze")
    commands = parser.add_subparsers(dest="userstudy_command", required=True, metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="balanced blinded pairs + browser videos + manifest.json")
    prepare.add_argument("--spec", required=True, help="resolved run spec (stages.userstudy options)")
    prepare.add_argument("--samples", action="append", required=True, metavar="METHOD=DIR",
                         help="a method's samples folder from `raven sample` (repeat; include the study's method)")
    prepare.add_argument("--out", required=True, help="study folder: videos/ and manifest.json (written last)")
    prepare.add_argument("--db", help=f"votes database to report on (default <out>/{DATABASE}): votes on pairs "
                                      "the new manifest still has are kept, the rest archived")
    prepare.set_defaults(handler=run_prepare)

    serve = commands.add_parser("serve", help="the judging web page (waitress) on a prepared study folder")
    serve.add_argument("--study", required=True, help="prepared study folder (manifest.json, videos/)")
    serve.add_argument("--db", help=f"SQLite file of votes (default <study>/{DATABASE})")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: local only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--threads", type=int, default=8, help="waitress worker threads (default 8)")
    serve.add_argument("--admin-token-file", help="file holding the token that unlocks GET /tally "
                                                  "(Authorization: Bearer <token>); without it only the CLI tallies")
    serve.set_defaults(handler=run_serve)

    simulate = commands.add_parser("simulate", help="toy scales: raters driven by the toy-world benchmark")
    simulate.add_argument("--study", required=True, help="prepared study folder (manifest.json)")
    simulate.add_argument("--db", help=f"SQLite file of votes (default <study>/{DATABASE})")
    simulate.add_argument("--raters", type=int, default=3, help="simulated annotators sim-0.. (default 3)")
    simulate.add_argument("--margin", type=float, default=0.01, help="score difference below which a rater ties")
    simulate.add_argument("--temperature", type=float, default=0.05, help="0 = always prefer the better video")
    simulate.add_argument("--seed", type=int, default=0, help="seed of the raters' random choices")
    simulate.add_argument("--out", help="also export the counting votes to this JSON (as `export` does)")
    simulate.set_defaults(handler=run_simulate)

    export = commands.add_parser("export", help="snapshot the votes that count (JSON) for the analysis; "
                                                "fails with instructions while there are none")
    export.add_argument("--study", required=True, help="prepared study folder (manifest.json)")
    export.add_argument("--db", help=f"SQLite file of votes (default <study>/{DATABASE})")
    export.add_argument("--out", required=True, help="votes JSON (counting votes + summary)")
    export.set_defaults(handler=run_export)

    analyze = commands.add_parser("analyze", aliases=["tally"], help="win/tie/loss rates with bootstrap CIs + Figure 6")
    analyze.add_argument("--study", required=True, help="prepared study folder (manifest.json)")
    source = analyze.add_mutually_exclusive_group()
    source.add_argument("--db", help=f"SQLite file of votes (default <study>/{DATABASE})")
    source.add_argument("--votes", help="a votes JSON from `export` instead of the database")
    analyze.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% intervals")
    analyze.add_argument("--out", required=True, help="analysis JSON")
    analyze.add_argument("--plot", help="bar chart PNG (the paper's Figure 6)")
    analyze.set_defaults(handler=run_analyze)


def database(args: argparse.Namespace, folder: str | None = None):
    from pathlib import Path

    return Path(args.db) if args.db else Path(folder or args.study) / DATABASE


def read_manifest(study: str) -> dict:
    from pathlib import Path

    from raven.io import read_json

    return read_json(Path(study) / "manifest.json")


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import ConfigError, read_spec, stage_options
    from raven.evaluation.judgements import JudgementStore, describe
    from raven.evaluation.options import UserStudyOptions
    from raven.evaluation.userstudy import prepare

    spec = read_spec(args.spec)
    options = stage_options(spec, "userstudy", UserStudyOptions)
    folders = {}
    for item in args.samples:
        name, sep, folder = item.partition("=")
        if not sep:
            raise ConfigError(f"--samples {item!r}: expected METHOD=DIR")
        folders[name] = Path(folder)
    manifest = prepare(options.method, folders, args.out, options.samples_per_prompt, options.seed, options.prompts)
    print(f"{len(manifest['pairs'])} pairs of {options.method} vs {', '.join(manifest['opponents'])} in {args.out}")
    votes = database(args, args.out)
    if votes.is_file():
        print(describe(JudgementStore(votes, manifest).summary(), votes))
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    import waitress

    from raven.evaluation.webapp import MAX_BODY, create_app

    token = Path(args.admin_token_file).read_text().strip() if args.admin_token_file else None
    if args.admin_token_file and len(token) < 16:
        raise ValueError(f"--admin-token-file {args.admin_token_file}: the token must have at least 16 characters")
    app = create_app(read_manifest(args.study), args.study, database(args), token)
    print(f"user study on http://{args.host}:{args.port}/ (votes: {database(args)})", flush=True)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads, max_request_body_size=MAX_BODY)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from raven.evaluation.judgements import JudgementStore, export
    from raven.evaluation.userstudy import simulate

    manifest = read_manifest(args.study)
    store = JudgementStore(database(args), manifest)
    count = simulate(manifest, store, args.raters, args.margin, args.temperature, args.seed)
    print(f"{count} new simulated judgements in {database(args)}")
    if args.out:
        export(store, args.out)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from raven.evaluation.judgements import JudgementStore, describe, export

    manifest = read_manifest(args.study)
    if not database(args).is_file():
        print(f"No judgements yet: run `raven userstudy serve --study {args.study} --db {database(args)}`, let the "
              "annotators judge the pairs, and run Snakemake again (README \"User study\").")
        return 1
    store = JudgementStore(database(args), manifest)
    snapshot = export(store, args.out)
    print(describe(snapshot["summary"], database(args)))
    if not snapshot["votes"]:
        print("none of these votes is on a pair of this manifest: nothing to analyze yet")
        return 1
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from raven.evaluation.judgements import JudgementStore
    from raven.evaluation.userstudy import analyze, plot_preferences
    from raven.io import atomic_write_json, read_json

    manifest = read_manifest(args.study)
    if args.votes:
        snapshot = read_json(args.votes)
        unknown = {v["pair"] for v in snapshot["votes"]} - {p["pair"] for p in manifest["pairs"]}
        if unknown:
            raise ValueError(f"{args.votes}: {len(unknown)} voted pairs are not in {args.study}/manifest.json; "
                             "export the votes again (raven userstudy export)")
        votes, summary = snapshot["votes"], snapshot["summary"]
    else:
        store = JudgementStore(database(args), manifest)
        votes, summary = store.rows(), store.summary()
    analysis = analyze(manifest, votes, args.bootstrap, votes=summary)
    if args.plot:
        plot_preferences(analysis, args.plot)
    atomic_write_json(args.out, analysis)
    return 0
