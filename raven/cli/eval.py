"""`raven eval toy|drift|vbench-protocol|vbench-env|vbench|unified-reward|row`: metrics of sampled videos
and the row JSONs the tables are built from."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate samples: toy-world benchmark, VBench, UnifiedReward; rows")
    commands = parser.add_subparsers(dest="eval_command", required=True, metavar="BENCHMARK")

    toy = commands.add_parser("toy", help="toy-world benchmark (VBench-like dimensions, toy-world scores)")
    toy.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    toy.add_argument("--samples", required=True, help="folder written by `raven sample`")
    toy.add_argument("--out", required=True, help="metrics JSON")
    toy.add_argument("--plan", help="protocol plan (`raven eval vbench-protocol --suite`): score its scored set, "
                                    "named and static-filtered as VBench's (default: every sample of the folder)")
    toy.add_argument("--work", help="with --plan: folder for the protocol's names, static clips and scored set")
    toy.set_defaults(handler=run_toy)

    drift = commands.add_parser("drift", help="per-chunk colour/shape/count/identity consistency of long videos")
    drift.add_argument("--spec", required=True, help="run spec (chunking and codec decide the chunk frames)")
    drift.add_argument("--samples", action="append", required=True, metavar="LABEL=DIR", help="repeat per method")
    drift.add_argument("--out", required=True, help="drift JSON")
    drift.add_argument("--plot", required=True, help="drift PNG")
    drift.set_defaults(handler=run_drift)

    protocol = commands.add_parser("vbench-protocol", help="the VBench sampling plan: names, texts, seeds")
    protocol.add_argument("--spec", required=True, help="stages.vbench options; seed = spec.seed + file index")
    protocol.add_argument("--out", required=True, help="JSON list of {name, prompt, text, index, seed, flicker}")
    protocol.add_argument("--prompts", required=True,
                          help="prompt file for `raven sample --seeds-per-prompt 1`: one line per protocol file")
    protocol.add_argument("--suite", help="toy scales: this prompt file (the held-out prompts) stands in for VBench's "
                                          "suite, counts from stages.toy_protocol (raven.evaluation.vbench_toy)")
    protocol.set_defaults(handler=run_vbench_protocol)

    env = commands.add_parser("vbench-env", help="build the separate VBench venv from workflow/envs/vbench.txt")
    env.add_argument("--spec", required=True, help="stages.vbench.venv says where")
    env.set_defaults(handler=run_vbench_env)

    vbench = commands.add_parser("vbench", help="static filter + VBench dimensions in the VBench venv + totals")
    vbench.add_argument("--spec", required=True, help="stages.vbench options (the environment, the dimensions)")
    vbench.add_argument("--samples", required=True, help="`raven sample` folder of the protocol's prompt file")
    vbench.add_argument("--plan", required=True, help="protocol plan written by `raven eval vbench-protocol`")
    vbench.add_argument("--work", required=True, help="scratch folder: VBench names, static filter, scored set, raw results")
    vbench.add_argument("--out", required=True, help="metrics JSON")
    vbench.set_defaults(handler=run_vbench)

    reward = commands.add_parser("unified-reward", help="UnifiedReward-qwen dynamic degree (1-4) of samples")
    reward.add_argument("--spec", required=True, help="stages.unified_reward.model: local weights folder")
    reward.add_argument("--samples", required=True, help="folder written by `raven sample`")
    reward.add_argument("--out", required=True, help="JSON of the mean dynamic degree (1-4) and parse failures")
    reward.set_defaults(handler=run_unified_reward)

    row = commands.add_parser("row", help="write results/<scale>/rows/<row>.json and log it to MLflow")
    row.add_argument("--spec", required=True, help="the row's run spec (its params in MLflow)")
    row.add_argument("--row", required=True, help="a row of config/experiments.yaml")
    row.add_argument("--metrics", required=True, nargs="+",
                     help="JSON of `raven eval toy` or `raven eval vbench`, one per seed replica of the row")
    row.add_argument("--dyn-deg", nargs="*", default=[],
                     help="JSONs of `raven eval unified-reward`, one per replica (their mean dyn_deg replaces the "
                          "benchmark's)")
    row.add_argument("--training", nargs="*", default=[], metavar="SUMMARY",
                     help="summary.json of every training stage the row's models come from (each replica's run, "
                          "what it started from); the row records their iteration counts and any stop by a guard")
    row.add_argument("--grid", help="PNG sample grid of the row (`raven report grid`), logged with its MLflow run")
    row.add_argument("--config-dir", default="config", help="folder of experiments.yaml: the row's recipe and tables")
    row.set_defaults(handler=run_row)


def samples_fps(samples, spec) -> float:
    return float(samples.summary.get("fps", spec.video.fps))


def run_toy(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.config import ConfigError, read_spec
    from raven.evaluation.samples import read_samples
    from raven.evaluation.toy import benchmark
    from raven.io import atomic_write_json, read_json

    spec = read_spec(args.spec)
    if (args.plan is None) != (args.work is None):
        raise ConfigError("raven eval toy: give --plan and --work together (or neither)")
    if args.plan:
        from raven.config import stage_options
        from raven.evaluation.options import ToyProtocolOptions
        from raven.evaluation.vbench_suite import plan_files
        from raven.evaluation.vbench_toy import score_toy_protocol

        options = stage_options(spec, "toy_protocol", ToyProtocolOptions)
        fps = float(read_json(Path(args.samples) / "summary.json").get("fps", spec.video.fps))
        report = score_toy_protocol(args.samples, plan_files(read_json(args.plan), spec.seed), options, args.work, fps)
    else:
        samples = read_samples(args.samples)
        report = benchmark(samples.videos, samples.prompts, samples_fps(samples, spec))
    atomic_write_json(args.out, {**report, "samples": str(args.samples), "scale": spec.scale})
    print(f"toy-world total {report['total']:.4f} quality {report['quality']:.4f} semantic {report['semantic']:.4f} "
          f"dyn_deg {report['dyn_deg']:.3f} on {report['videos']} videos")
    return 0


def run_drift(args: argparse.Namespace) -> int:
    from raven.config import ConfigError, read_spec
    from raven.evaluation.samples import read_samples
    from raven.evaluation.toy import drift, plot_drift, video_chunk_bounds
    from raven.io import atomic_write_json

    spec = read_spec(args.spec)
    reports = {}
    for item in args.samples:
        label, sep, folder = item.partition("=")
        if not sep:
            raise ConfigError(f"--samples {item!r}: expected LABEL=DIR")
        samples = read_samples(folder)
        frames = samples.videos.shape[1]
        bounds = video_chunk_bounds(frames, spec.chunks.chunk_size, spec.chunks.first_chunk_size,
                                    spec.codec.temporal_factor)
        reports[label] = {**drift(samples.videos, samples.prompts, bounds), "samples": folder,
                          "length_x_training": frames / spec.video.frames}
    plot_drift(reports, args.plot)
    atomic_write_json(args.out, {"kind": "toy-world", "drift": reports})
    return 0


def vbench_options(spec):
    from raven.config import stage_options
    from raven.evaluation.options import VBenchOptions

    return stage_options(spec, "vbench", VBenchOptions)


def protocol_files(spec, suite=None):
    """VBench's protocol files (stages.vbench), or with `suite` (a prompt file) the toy stand-in's."""
    from raven.evaluation.vbench_suite import load_full_info, protocol, read_extended_prompts

    if suite is not None:
        from raven.config import stage_options
        from raven.data.prompts import read_prompt_file
        from raven.evaluation.options import ToyProtocolOptions
        from raven.evaluation.vbench_toy import toy_suite

        options = stage_options(spec, "toy_protocol", ToyProtocolOptions)
        entries = toy_suite(read_prompt_file(suite), options.flicker_prompts)
        return protocol(entries, flicker_samples=options.flicker_samples, samples=options.samples, base_seed=spec.seed)
    options = vbench_options(spec)
    info = load_full_info(options.full_info)
    extended = read_extended_prompts(options.extended_prompts, len(info)) if options.extended_prompts else None
    return protocol(info, extended, flicker_samples=options.flicker_samples, samples=options.samples,
                    base_seed=spec.seed, max_prompts=options.max_prompts)


def run_vbench_protocol(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from raven.config import read_spec
    from raven.data.prompts import write_prompt_file
    from raven.io import atomic_write_json

    files = protocol_files(read_spec(args.spec), args.suite)
    write_prompt_file(args.prompts, [f.text for f in files])
    atomic_write_json(args.out, [{"name": f.name, **asdict(f)} for f in files])
    print(f"{len(files)} VBench files planned in {args.out}; prompts for `raven sample` in {args.prompts}")
    return 0


def run_vbench_env(args: argparse.Namespace) -> int:
    from raven.config import read_spec
    from raven.evaluation.vbench_suite import build_env

    options = vbench_options(read_spec(args.spec))
    print(f"VBench environment ready: {build_env(options.venv, detectron2=options.detectron2)}")
    return 0


def run_vbench(args: argparse.Namespace) -> int:
    from raven.config import ConfigError, read_spec
    from raven.evaluation.vbench_suite import plan_files, score_protocol_samples
    from raven.io import atomic_write_json, read_json

    spec = read_spec(args.spec)
    options = vbench_options(spec)
    if options.cache_dir is None:
        raise ConfigError("stages.vbench.cache_dir is not set: point it at the local VBench weights folder")
    report = score_protocol_samples(args.samples, plan_files(read_json(args.plan), spec.seed), options, args.work)
    atomic_write_json(args.out, {**report, "samples": str(args.samples)})
    print(f"VBench on {report['scored']} videos: {report['dimensions']}")
    return 0


def run_unified_reward(args: argparse.Namespace) -> int:
    from raven.config import ConfigError, read_spec, stage_options
    from raven.evaluation.options import UnifiedRewardOptions
    from raven.evaluation.unified_reward import UnifiedReward, score_samples
    from raven.io import atomic_write_json

    spec = read_spec(args.spec)
    options = stage_options(spec, "unified_reward", UnifiedRewardOptions)
    if options.model is None:
        raise ConfigError("stages.unified_reward.model is not set: the local UnifiedReward-qwen-32B folder")
    judge = UnifiedReward.load(options.model, options.dtype, options.max_new_tokens)
    report = score_samples(judge, args.samples, options.fps)
    atomic_write_json(args.out, {**report, "samples": str(args.samples)})
    print(f"UnifiedReward dynamic degree {report['dyn_deg']:.3f} ({report['parse_failures']} parse failures)")
    return 0


def run_row(args: argparse.Namespace) -> int:
    from raven.config import read_spec
    from raven.evaluation.rows import build_row, pool_replicas, row_recipe, training_record, write_and_log_row
    from raven.io import read_json

    spec = read_spec(args.spec)
    metrics, spread = pool_replicas([read_json(path) for path in args.metrics])
    sources = {"metrics": args.metrics[0] if len(args.metrics) == 1 else args.metrics}
    dyn_deg = None
    if args.dyn_deg:
        dyn_deg = sum(read_json(path)["dyn_deg"] for path in args.dyn_deg) / len(args.dyn_deg)
        sources["dyn_deg"] = args.dyn_deg[0] if len(args.dyn_deg) == 1 else args.dyn_deg
        spread.get("ci", {}).pop("dyn_deg", None)  # the judge's, not the benchmark's per-video ratings
    recipe = row_recipe(args.config_dir, args.row, spec.weights.baselines)
    row = {**build_row(args.row, spec.scale, metrics, recipe, sources, dyn_deg),
           **spread, **training_record({path: read_json(path) for path in args.training})}
    from raven.stages import with_stage_defaults

    logged = with_stage_defaults(spec)  # MLflow params: every stage option, defaults included
    print(f"row {args.row}: {write_and_log_row(logged, row, args.config_dir, [args.grid] if args.grid else [])}")
    return 0
