"""`raven userstudy prepare|serve|simulate|analyze`: the blinded pairwise user study (SPEC §10)."""

from __future__ import annotations

import argparse

DATABASE = "judgements.sqlite"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("userstudy", help="blinded A/B user study: prepare, serve, simulate, analyze")
    commands = parser.add_subparsers(dest="userstudy_command", required=True, metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="balanced blinded pairs + browser videos + manifest.json")
    prepare.add_argument("--spec", required=True, help="resolved run spec (stages.userstudy options)")
    prepare.add_argument("--samples", action="append", required=True, metavar="METHOD=DIR",
                         help="a method's samples folder from `raven sample` (repeat; include the study's method)")
    prepare.add_argument("--out", required=True, help="study folder: videos/ and manifest.json (written last)")
    prepare.set_defaults(handler=run_prepare)

    serve = commands.add_parser("serve", help="the judging web page (Flask) on a prepared study folder")
    serve.add_argument("--study", required=True)
    serve.add_argument("--db", help=f"SQLite file of judgements (default <study>/{DATABASE})")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: local only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=run_serve)

    simulate = commands.add_parser("simulate", help="toy scales: raters driven by the toy-world benchmark")
    simulate.add_argument("--study", required=True)
    simulate.add_argument("--db")
    simulate.add_argument("--raters", type=int, default=3)
    simulate.add_argument("--margin", type=float, default=0.01, help="score difference below which a rater ties")
    simulate.add_argument("--temperature", type=float, default=0.05, help="0 = always prefer the better video")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.set_defaults(handler=run_simulate)

    analyze = commands.add_parser("analyze", aliases=["tally"], help="win/tie/loss rates with bootstrap CIs + Figure 6")
    analyze.add_argument("--study", required=True)
    analyze.add_argument("--db")
    analyze.add_argument("--bootstrap", type=int, default=2000)
    analyze.add_argument("--out", required=True, help="analysis JSON")
    analyze.add_argument("--plot", help="bar chart PNG (the paper's Figure 6)")
    analyze.set_defaults(handler=run_analyze)


def database(args: argparse.Namespace):
    from pathlib import Path

    return Path(args.db) if args.db else Path(args.study) / DATABASE


def read_manifest(study: str) -> dict:
    from pathlib import Path

    from raven.io import read_json

    return read_json(Path(study) / "manifest.json")


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import ConfigError, read_spec, stage_options
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
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from raven.evaluation.webapp import create_app

    app = create_app(read_manifest(args.study), args.study, database(args))
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    from raven.evaluation.userstudy import JudgementStore, simulate

    manifest = read_manifest(args.study)
    store = JudgementStore(database(args), [p["pair"] for p in manifest["pairs"]])
    count = simulate(manifest, store, args.raters, args.margin, args.temperature, args.seed)
    print(f"{count} simulated judgements in {database(args)}")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from raven.evaluation.userstudy import JudgementStore, analyze, plot_preferences
    from raven.io import atomic_write_json

    manifest = read_manifest(args.study)
    store = JudgementStore(database(args), [p["pair"] for p in manifest["pairs"]])
    analysis = analyze(manifest, store.rows(), args.bootstrap)
    if args.plot:
        plot_preferences(analysis, args.plot)
    atomic_write_json(args.out, analysis)
    return 0
