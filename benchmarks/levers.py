"""Benchmark of one lever (issue 19): a trained row of the DAG rerun with some spec keys changed, and compared
with the DAG's own row, beyond the noise or not.

Every seed replica of `--row` is retrained from the DAG's own inputs: its resolved spec
(`<results>/specs/<replica>.yaml`) with the `--set` keys merged in (each checked against the stage's options
model), the init its DAG training started from (the training summary's `init`), the training prompts and text
cache. Then it is sampled on the DAG's held-out protocol and scored by `raven eval toy` with the DAG's plan,
exactly as the DAG's `train_*`, `sample` and `eval_toy` rules do. Replica k of the lever keeps the DAG's seed
and init of replica k, so the comparison pairs seeds (raven.evaluation.stats.compare): lever − row in Total,
Quality, Semantic and dyn_deg with 95% intervals over seeds and prompts. For a CM-GRPO row, also the
aggregate reward's rise over the row it continues (benchmarks/cmgrpo.py), for the lever and for the DAG's row.

Everything goes to `<results>/levers/<name>/` (its own MLflow store), so the DAG's outputs and MLflow runs are
untouched; a rerun resumes (finished replicas are kept, training resumes from its checkpoints). Adds or
replaces the lever `<name>` in benchmarks/reports/levers.json.

    .venv/bin/python benchmarks/levers.py --row raven --set stages.dmd.iterations=120 [--name dmd_120]
    .venv/bin/python benchmarks/levers.py --row raven_cmgrpo --set stages.cmgrpo.group_size=8 --jobs 2
"""

from __future__ import annotations

import argparse
import fcntl
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from host import machine

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "reports" / "levers.json"
METRICS = ("total", "quality", "semantic", "dyn_deg")
TRAINED = ("dmd", "cmgrpo")
CLIP_HISTORY = ("tf", "df")  # history modes that train on the DAG's real clips (workflow/rules/train.smk)


def lever_spec(dag_spec: Path, override: Mapping[str, Any], tracking_uri: str):
    """The DAG's resolved spec with `override` merged in and its own MLflow store; every stage the override
    touches is validated by its options model, so a misspelt key is named before anything trains."""
    from raven.config import deep_merge, load_yaml, stage_options, validate
    from raven.config.spec import RunSpec
    from raven.stages import stage_models

    source = f"{dag_spec} with --set {override}"
    spec = validate(RunSpec, deep_merge(load_yaml(dag_spec), {**override, "tracking_uri": tracking_uri}), source)
    models = stage_models()
    for stage in (override.get("stages") or {}):
        if stage not in models:
            raise SystemExit(f"--set stages.{stage}...: no such stage; stages: {sorted(models)}")
        stage_options(spec, stage, models[stage])
    return spec


def train_args(summary: Mapping[str, Any], summary_path: Path, results: Path, spec: Path, out: Path,
               prompts: Path | None = None) -> list[str]:
    """`raven train <stage> ...` as the DAG ran it for the replica whose training summary this is; with `prompts`,
    on that prompt file instead of the DAG's, encoded by the text encoder (the DAG's cache holds its own prompts)."""
    stage = summary.get("stage")
    if stage not in TRAINED:
        raise SystemExit(f"{summary_path}: stage {stage!r}; a lever reruns a trained row ({' or '.join(TRAINED)})")
    if summary.get("history_mode") in CLIP_HISTORY:
        raise SystemExit(f"{summary_path}: history mode {summary['history_mode']!r} trains on the DAG's real clips, "
                         "which this benchmark does not pass; pick a row that trains on its own rollouts")
    text = [] if prompts else ["--text-cache", str(results / "data" / "text_cache")]
    return ["train", stage, "--spec", str(spec), "--init", str(summary["init"]),
            "--prompts", str(prompts or results / "data" / "prompts" / "train.txt"), *text, "--out", str(out)]


def run_raven(args: Sequence[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:
        done = subprocess.run([str(Path(sys.executable).parent / "raven"), *args], cwd=ROOT, stdout=stream,
                              stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"`raven {shlex.join(args)}` failed (exit {done.returncode}); its log: {log}")


def run_replica(replica: str, results: Path, work: Path, override: Mapping[str, Any],
                prompts: Path | None = None) -> dict[str, Any]:
    """Train, sample and score one replica of the lever (each step skipped when its output exists, for a lever
    whose spec is unchanged)."""
    from raven.config import read_spec, write_spec
    from raven.io import read_json

    dag_summary = results / "train" / replica / "summary.json"
    dag_spec = results / "specs" / f"{replica}.yaml"
    for path in (dag_summary, dag_spec):
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run the DAG first (`snakemake --profile local {path}`)")
    spec = work / "specs" / f"{replica}.yaml"
    wanted = lever_spec(dag_spec, override, f"sqlite:///{work.resolve()}/mlflow.db")
    if spec.is_file() and read_spec(spec) != wanted:
        raise SystemExit(f"{spec}: this lever was made with other settings (another --set, or the DAG's {dag_spec} "
                         f"changed since); its results would not be this lever's. Give it another --name, or delete "
                         f"{work} to remake it")
    write_spec(wanted, spec)
    train, samples, metrics = work / "train" / replica, work / "samples" / replica, work / "eval" / replica / "toy.json"
    logs, dag_training = work / "logs" / replica, read_json(dag_summary)
    if not (train / "summary.json").is_file():
        run_raven(train_args(dag_training, dag_summary, results, spec, train, prompts), logs / "train.log")
    if not (samples / "summary.json").is_file():
        run_raven(["sample", "--spec", str(spec), "--model", str(train / "model_ema"),
                   "--prompts", str(results / "data" / "prompts" / "protocol.txt"), "--out", str(samples)],
                  logs / "sample.log")
    if not metrics.is_file():
        run_raven(["eval", "toy", "--spec", str(spec), "--samples", str(samples),
                   "--plan", str(results / "eval" / "protocol.json"), "--work", str(metrics.parent / "toy"),
                   "--out", str(metrics)], logs / "eval.log")
    summary = read_json(train / "summary.json")
    return {"metrics": read_json(metrics), "samples": samples, "stage": dag_training["stage"],
            "training": {key: summary.get(key) for key in ("iterations", "iterations_target", "stopped_by_budget",
                                                           "train_s", "threads")}}


def units_of_replicas(metrics: Sequence[Mapping[str, Any]]):
    """The per-seed, per-prompt units of the replicas' `raven eval toy` outputs, as a row JSON stores them (its
    JSON form, so a lever and the DAG's row are compared at the same precision)."""
    from raven.evaluation.scores import UNIT_BOUNDS
    from raven.evaluation.stats import Units, units_of

    return Units.from_json(units_of([m["per_video"] for m in metrics], UNIT_BOUNDS).to_json())


def versus(lever, row: str, other: Mapping[str, Any], other_name: str) -> dict[str, Any]:
    """This lever − another lever of the report (e.g. raven − self_forcing, both with fewer DMD iterations), from
    the other's evaluated replicas; seeds paired only where the two rows share a trained starting point."""
    from raven.config import load_experiments, replica_names
    from raven.config.rows import seed_paired
    from raven.evaluation.stats import compare
    from raven.io import read_json

    work = Path(other["work"])
    units = units_of_replicas([read_json(work / "eval" / replica / "toy.json")
                               for replica in replica_names(other["row"], other["seeds"])])
    paired = seed_paired(load_experiments(ROOT / "config"), row, other["row"])
    return {"lever": other_name, "row": other["row"],
            **{metric: compare(lever, units, metric, paired_seeds=paired) for metric in METRICS
               if metric in lever.values and metric in units.values}}


def reward_rises(row: str, lever_samples: Sequence[Path], results: Path, scale: str, seeds: int) -> dict[str, Any]:
    """For a CM-GRPO row: the aggregate reward's rise over the row it continues, of the lever and of the DAG's row
    (seeds paired: every replica k continues the parent's replica k), and lever − row."""
    import cmgrpo

    from raven.config import load_experiments, replica_names
    from raven.evaluation.stats import compare
    from raven.rewards import REWARD_NAMES, RewardSources, build_rewards

    parent = load_experiments(ROOT / "config")[row]["from"]
    weights = cmgrpo.row_weights(ROOT / "config", scale, row, results, seeds)
    rewards = build_rewards(list(REWARD_NAMES), RewardSources())

    def units(folders):
        return cmgrpo.weighted_units([cmgrpo.score_replica(f, rewards, False)[0] for f in folders], weights)

    before = units([results / "samples" / replica for replica in replica_names(parent, seeds)])
    dag = units([results / "samples" / replica for replica in replica_names(row, seeds)])
    lever = units(lever_samples)
    rise = {f"lever_{k}": v for k, v in cmgrpo.comparisons(lever, before, [cmgrpo.AGGREGATE])[cmgrpo.AGGREGATE].items()}
    rise.update({f"dag_{k}": v for k, v in cmgrpo.comparisons(dag, before, [cmgrpo.AGGREGATE])[cmgrpo.AGGREGATE].items()
                 if k.startswith("rise")})
    rise["lever_minus_dag"] = compare(lever, dag, cmgrpo.AGGREGATE, paired_seeds=True)
    return {"continues": parent, "reward_weights": weights, **rise}


def build_lever(row: str, override: Mapping[str, Any], results: Path, name: str, jobs: int,
                other: tuple[str, Mapping[str, Any]] | None = None, prompts: Path | None = None) -> dict[str, Any]:
    from tqdm import tqdm

    from raven.config import read_spec, replica_names
    from raven.evaluation.stats import Units, cell_intervals, compare
    from raven.io import atomic_write_json, read_json

    dag_row = results / "rows" / f"{row}.json"
    if not dag_row.is_file():
        raise SystemExit(f"{dag_row}: missing; run the DAG first (`snakemake --profile local {dag_row}`)")
    dag_spec = read_spec(results / "specs" / f"{row}.yaml")
    seeds = dag_spec.seeds
    replicas = replica_names(row, seeds)
    work = results / "levers" / name
    identity, mine = work / "lever.json", {"train_prompts": str(prompts) if prompts else None}
    if identity.is_file() and read_json(identity) != mine:
        raise SystemExit(f"{identity}: this lever trained on {read_json(identity)['train_prompts'] or 'the DAG prompts'}; "
                         f"give it another --name, or delete {work} to remake it")
    atomic_write_json(identity, mine)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_replica, replica, results, work, override, prompts) for replica in replicas]
        done = [future.result() for future in tqdm(futures, desc=f"lever {name}", unit="replica")]
    lever = units_of_replicas([d["metrics"] for d in done])
    dag = Units.from_json(read_json(dag_row)["units"])
    cells_lever, cells_dag = cell_intervals(lever), cell_intervals(dag)
    report = {
        "row": row, "set": dict(override), "train_prompts": str(prompts) if prompts else "the DAG's",
        "seeds": seeds, "prompts": len(lever.prompts),
        "samples_per_prompt": len(done[0]["metrics"]["per_video"]) // len(lever.prompts),
        "training": {replica: d["training"] for replica, d in zip(replicas, done, strict=True)},
        "stopped_by_budget": any(d["training"]["stopped_by_budget"] for d in done),
        "lever": cells_lever, "dag": {metric: cells_dag[metric] for metric in cells_lever},
        # replica k of the lever has the seed and init of the DAG's replica k
        "lever_minus_dag": {metric: compare(lever, dag, metric, paired_seeds=True) for metric in METRICS
                            if metric in lever.values},
        "wall_s": round(time.perf_counter() - started, 1), "jobs": jobs, "work": str(work),
    }
    if other is not None:
        report["versus"] = versus(lever, row, other[1], other[0])
    if done[0]["stage"] == "cmgrpo":
        report["reward"] = reward_rises(row, [d["samples"] for d in done], results, dag_spec.scale, seeds)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    from raven.io import atomic_write_json, read_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", required=True, help="a trained row of config/experiments.yaml (DMD or CM-GRPO)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a spec key to change, dotted (repeatable), e.g. stages.dmd.iterations=120")
    parser.add_argument("--name", help="the lever's name in the report (default: the row and its --set values)")
    parser.add_argument("--results", default=str(ROOT / "results" / "tiny"), help="the DAG's results/<scale>")
    parser.add_argument("--jobs", type=int, default=1, help="replicas run side by side (one torch thread each)")
    parser.add_argument("--train-prompts", type=Path, metavar="FILE",
                        help="train on this prompt file instead of the DAG's (a lever of its own; with no --set)")
    parser.add_argument("--versus", metavar="LEVER",
                        help="also compare with another lever of the report (e.g. raven's with self_forcing's)")
    parser.add_argument("--out", default=str(REPORT))
    args = parser.parse_args(argv)
    if not args.set and not args.train_prompts:
        parser.error("give --set KEY=VALUE or --train-prompts FILE: a lever without a change is the DAG's row")
    from raven.cli.spec import parse_overrides
    from raven.config import ConfigError

    try:
        override = parse_overrides(args.set)
    except ConfigError as error:
        parser.error(str(error))
    name = args.name or "__".join([args.row, *(item.replace("stages.", "") for item in args.set),
                                   *([f"prompts={args.train_prompts.stem}"] if args.train_prompts else [])])
    out = Path(args.out)
    other = None
    if args.versus:
        known = read_json(out)["levers"] if out.is_file() else {}
        if args.versus not in known:
            raise SystemExit(f"--versus {args.versus!r}: no such lever in {out}; it has {sorted(known)}")
        other = (args.versus, known[args.versus])
    prompts = args.train_prompts.resolve() if args.train_prompts else None
    lever = build_lever(args.row, override, Path(args.results), name, max(1, args.jobs), other, prompts)
    with open(f"{out}.lock", "a") as lock:  # levers run side by side each add themselves to one report
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = read_json(out) if out.is_file() else {"levers": {}}
        report["levers"][name] = {**lever, "command": shlex.join([sys.executable, *sys.argv]), "machine": machine()}
        atomic_write_json(out, report)
    diff = lever["lever_minus_dag"]["total"]
    print(f"{name}: Total lever − row {diff['diff']:+.4f} [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}] "
          f"({'significant' if diff['significant'] else 'within the noise'}); wrote {out}")


if __name__ == "__main__":
    main()
