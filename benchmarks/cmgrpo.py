"""Learning benchmark of CM-GRPO (issues 6, 19; docs/method.md §8): do the rewards go up, beyond the noise?

Trains nothing: it reads what the DAG of one scale made (`snakemake --profile local all` at tiny scale).
`raven` is "before", `raven_cmgrpo` (the released reward weights) "after", and every `rw_*` CM-GRPO row of
config/experiments.yaml that continues `raven` is an ablation, each compared to `raven`. Each row has the
scale's `seeds` replicas (`<row>`, `<row>@s1`, ...: raven.config.replica_name), each sampled on the same
held-out prompt file into `<results>/samples/<replica>/`.

Every video of every replica is scored by the five toy (weight-free) rewards; its aggregate reward under a
row's weights is Σ w_m r_m / Σ |w_m| (raven.rewards.sum_then_normalize). Per row and metric, the units are
the mean over a prompt's videos per seed (raven.evaluation.stats); the rise after − before is
`stats.compare`: prompts paired, seeds resampled together (every row here continues `raven`, its replica k
from raven's replica k, so the seed noise they share cancels), 95% interval, significant when it excludes 0. The
toy-world Total comes from the row JSONs (`<results>/rows/<row>.json`) when they carry per-seed,
per-prompt units, else from the toy-world benchmark of the samples.

Writes benchmarks/reports/cmgrpo.json: for the released weights `reward_before`, `reward_after` (with
`_ci`), `reward_rise`, `reward_rise_ci`, `reward_rise_significant`; the same for `total_*` (`total_rise`:
the toy-world Total's comparison, not VBench); per reward `rewards_before`, `rewards_after`,
`rewards_change` (with `_ci`, and `rewards_change_significant`); `reward_weights`; from the CM-GRPO
training summaries `iterations` (per seed), `iterations_target`, `stopped_by_budget` and `reward_gap`;
`ablations`: the same keys per `rw_*` row; plus `seeds`, `heldout_prompts`, `samples_per_prompt`, the
machine and the command.

    .venv/bin/python benchmarks/cmgrpo.py [--results results/tiny] [--scale tiny] [--out benchmarks/reports/cmgrpo.json]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raven.config import replica_names

ROOT = Path(__file__).resolve().parents[1]
BEFORE, AFTER = "raven", "raven_cmgrpo"
ABLATION_PREFIX = "rw_"
AGGREGATE = "reward"  # the units' key of the aggregate reward under a row's weights
BATCH = 16  # videos scored at once
# What the DAG is run with per scale, for the snakemake command that makes a missing input.
PROFILES = {"paper": "slurm"}


def ablation_rows(config_dir: Path) -> list[str]:
    """The reward-weight ablations: `rw_*` CM-GRPO rows that continue `raven`, in file order."""
    from raven.config import load_experiments

    return [row for row, settings in load_experiments(config_dir).items()
            if row.startswith(ABLATION_PREFIX) and settings.get("method") == "cmgrpo"
            and settings.get("from") == BEFORE]


def missing_inputs(results: Path, scale: str, rows: Sequence[str], seeds: int) -> list[str]:
    """One line per input the DAG has not made yet: every replica's samples, and the CM-GRPO rows' training
    summaries, each with the snakemake command that makes it."""
    profile = PROFILES.get(scale, "local")
    needed = [results / "samples" / replica / "summary.json"
              for row in rows for replica in replica_names(row, seeds)]
    needed += [results / "train" / replica / "summary.json" for row in rows if row != BEFORE
               for replica in replica_names(row, seeds)]
    return [f"{path.parent}: missing (no {path.name}); make it with `snakemake --profile {profile} {target(path)}`"
            for path in needed if not path.is_file()]


def target(path: Path) -> Path:
    """`path` as a Snakemake target: relative to the repository root, where Snakemake runs."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def score_replica(folder: Path, rewards: Mapping[str, Any],
                  toy_benchmark: bool) -> tuple[list[dict], list[dict] | None]:
    """Per video of a samples folder: {prompt, <reward>: value} for every reward, and (with `toy_benchmark`)
    the toy-world benchmark's per-video scores."""
    import torch

    from raven.evaluation.samples import read_samples
    from raven.evaluation.toy import benchmark
    from raven.rewards import score_videos
    from raven.world.render import to_model_range

    samples = read_samples(folder)
    fps = float(samples.summary["fps"])
    prompts = samples.prompts
    records = [{"prompt": prompt} for prompt in prompts]
    for first in range(0, len(prompts), BATCH):
        batch = slice(first, first + BATCH)
        # read_samples gives the exact uint8 pixels [N, T, H, W, 3] that `raven sample` wrote with to_uint8 from
        # the decoder's float [N, 3, T, H, W] in [-1, 1]; the rewards take that float layout and range (as
        # CM-GRPO passes them `codec.decode(latents)`). to_model_range is to_uint8's inverse, so the rewards'
        # own to_uint8 recovers these pixels exactly.
        pixels = torch.from_numpy(to_model_range(np.asarray(samples.videos[batch])))
        for name, values in score_videos(rewards, pixels, prompts[batch], fps).items():
            for record, value in zip(records[batch], values.tolist(), strict=True):
                record[name] = value
    failed = sorted({name for record in records for name, value in record.items()
                     if name != "prompt" and not np.isfinite(value)})
    if failed:
        raise ValueError(f"{folder}: rewards {failed} are not finite for some videos (see the warnings above); "
                         "the report needs every video scored")
    per_video = benchmark(samples.videos, prompts, fps)["per_video"] if toy_benchmark else None
    return records, per_video


def weighted_units(per_video_by_seed: Sequence[Sequence[Mapping[str, Any]]], weights: Mapping[str, float]):
    """Units of every reward and of the aggregate under `weights` (`AGGREGATE`, per video Σ w_m r_m / Σ |w_m|)."""
    import torch

    from raven.evaluation.stats import mean_units
    from raven.rewards import sum_then_normalize

    seeds = []
    for records in per_video_by_seed:
        names = [name for name in records[0] if name != "prompt"]
        scores = {name: torch.tensor([record[name] for record in records], dtype=torch.float64) for name in names}
        prompts = [record["prompt"] for record in records]
        aggregate = sum_then_normalize(scores, weights, prompts).tolist()
        seeds.append([{**record, AGGREGATE: value} for record, value in zip(records, aggregate, strict=True)])
    return mean_units(seeds)


def row_total_units(results: Path, row: str):
    """The toy-world Total's units of a row from its row JSON, or None when it carries none."""
    from raven.evaluation.stats import Units
    from raven.io import read_json

    path = results / "rows" / f"{row}.json"
    if not path.is_file():
        return None
    data = read_json(path)
    units = data.get("units")
    return Units.from_json(units) if units and "total" in units.get("values", {}) else None


def comparisons(after, before, metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per metric: the cells {before, before_ci, after, after_ci} and after − before {rise, rise_ci,
    rise_significant} (raven.evaluation.stats.compare)."""
    from raven.evaluation.stats import cell_intervals, compare

    cells_before, cells_after = cell_intervals(before), cell_intervals(after)
    results = {}
    for metric in metrics:
        rise = compare(after, before, metric, paired_seeds=True)  # every row here continues `before`
        results[metric] = {"before": cells_before[metric]["mean"], "before_ci": cells_before[metric]["ci"],
                           "after": cells_after[metric]["mean"], "after_ci": cells_after[metric]["ci"],
                           "rise": rise["diff"], "rise_ci": rise["ci"], "rise_significant": rise["significant"]}
    return results


def learning(after, before, reward_names: Sequence[str]) -> dict[str, Any]:
    """The report's reward keys of one row against `before`: `reward_*` of the aggregate, `rewards_*` per reward."""
    compared = comparisons(after, before, [AGGREGATE, *reward_names])
    report = {f"reward_{key}": value for key, value in compared[AGGREGATE].items()}
    for key, name in (("before", "rewards_before"), ("after", "rewards_after"), ("rise", "rewards_change")):
        report[name] = {reward: compared[reward][key] for reward in reward_names}
        report[f"{name}_ci"] = {reward: compared[reward][f"{key}_ci"] for reward in reward_names}
    report["rewards_change_significant"] = {reward: compared[reward]["rise_significant"] for reward in reward_names}
    return report


def training(results: Path, row: str, seeds: int) -> dict[str, Any]:
    """From the row's CM-GRPO training summaries: iterations per seed, target, whether a guard stopped one,
    and `reward_gap`, the within-group spread of the aggregate reward training logged at its last iteration
    (`reward_gap/aggregate` of `last_metrics`), mean over seeds; omitted, with a note, when a summary lacks it."""
    from raven.io import read_json

    summaries = [read_json(results / "train" / replica / "summary.json") for replica in replica_names(row, seeds)]
    record: dict[str, Any] = {
        "iterations": [summary["iterations"] for summary in summaries],
        "iterations_target": summaries[0].get("iterations_target"),
        "stopped_by_budget": any(bool(summary.get("stopped_by_budget")) for summary in summaries),
    }
    gaps = [(summary.get("last_metrics") or {}).get("reward_gap/aggregate") for summary in summaries]
    if all(gap is not None for gap in gaps):
        record["reward_gap"] = float(np.mean(gaps))
    else:
        record["reward_gap_note"] = ("omitted: a training summary has no reward_gap/aggregate in last_metrics "
                                     "(e.g. a run resumed at its last iteration logs no step)")
    return record


def row_weights(config_dir: Path, scale: str, row: str, results: Path, seeds: int) -> dict[str, float]:
    """The row's reward weights (its resolved spec); a training summary with other weights is stale."""
    from raven.config import resolve_spec, stage_options
    from raven.io import read_json
    from raven.training.cmgrpo import CMGRPOOptions

    weights = stage_options(resolve_spec(config_dir, scale, row=row), "cmgrpo", CMGRPOOptions).reward_weights
    for replica in replica_names(row, seeds):
        path = results / "train" / replica / "summary.json"
        trained = read_json(path).get("reward_weights")
        if trained is not None and dict(trained) != dict(weights):
            raise ValueError(f"{path}: trained with reward weights {trained}, but config/experiments.yaml gives "
                             f"{row} {weights}; rerun the DAG for this row (`--forcerun train_cmgrpo`)")
    return dict(weights)


def build_report(results: Path, scale: str, config_dir: Path = ROOT / "config") -> dict[str, Any]:
    from tqdm import tqdm

    from raven.config import resolve_spec
    from raven.evaluation.scores import UNIT_BOUNDS
    from raven.evaluation.stats import units_of
    from raven.rewards import REWARD_NAMES, RewardSources, build_rewards

    seeds = resolve_spec(config_dir, scale).seeds
    ablations = ablation_rows(config_dir)
    rows = [BEFORE, AFTER, *ablations]
    missing = missing_inputs(results, scale, rows, seeds)
    if missing:
        raise FileNotFoundError("the CM-GRPO report reads the DAG's outputs, and these are missing:\n  "
                                + "\n  ".join(missing) + f"\n(all of them: `snakemake --profile "
                                f"{PROFILES.get(scale, 'local')} all`)")
    totals = {row: row_total_units(results, row) for row in rows}
    rewards = build_rewards(list(REWARD_NAMES), RewardSources())
    scored, toy = {}, {}
    work = [(row, replica) for row in rows for replica in replica_names(row, seeds)]
    for row, replica in tqdm(work, desc="score", unit="replica"):
        scored[replica], toy[replica] = score_replica(results / "samples" / replica, rewards, totals[row] is None)
    total_source = {}
    for row in rows:
        total_source[row] = str(results / "rows" / f"{row}.json") if totals[row] is not None else "samples"
        if totals[row] is None:
            totals[row] = units_of([toy[replica] for replica in replica_names(row, seeds)], UNIT_BOUNDS)

    def row_report(row: str) -> dict[str, Any]:
        weights = row_weights(config_dir, scale, row, results, seeds)
        after = weighted_units([scored[replica] for replica in replica_names(row, seeds)], weights)
        before = weighted_units([scored[replica] for replica in replica_names(BEFORE, seeds)], weights)
        total = comparisons(totals[row], totals[BEFORE], ["total"])["total"]
        return {"row": row, "replicas": replica_names(row, seeds), "reward_weights": weights,
                **learning(after, before, REWARD_NAMES),
                **{f"total_{key}": value for key, value in total.items()},
                "total_source": {"before": total_source[BEFORE], "after": total_source[row]},
                **training(results, row, seeds)}

    released = row_report(AFTER)
    first = scored[replica_names(BEFORE, seeds)[0]]  # every replica answers the same prompts (stats.compare checks)
    per_prompt = sorted({count for records in scored.values()
                         for count in Counter(record["prompt"] for record in records).values()})
    return {
        **released,
        "before_row": BEFORE, "before_replicas": replica_names(BEFORE, seeds),
        "ablations": [row_report(row) for row in ablations],
        "scale": scale, "results": str(results), "seeds": seeds,
        "heldout_prompts": len({record["prompt"] for record in first}),
        "samples_per_prompt": per_prompt[0] if len(per_prompt) == 1 else per_prompt,
        "rewards": "toy (weight-free) rewards of raven.rewards.toy; total: toy-world benchmark, not VBench",
        "reward_aggregate": "per video Σ w_m r_m / Σ |w_m| (sum_then_normalize) under the row's weights; "
                            "units: mean over a prompt's videos per seed",
        "intervals": "95% bootstrap over seeds and prompts; rises pair prompts and seeds "
                     "(raven.evaluation.stats.compare)",
        "reward_gap_meaning": "reward_gap/aggregate of each seed's last CM-GRPO iteration (its summary's "
                              "last_metrics), mean over seeds, in the training aggregation's units "
                              "(stages.cmgrpo.aggregation); the per-iteration history is in the MLflow store",
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--results", help="the DAG's results folder of the scale (default: results/<scale>)")
    parser.add_argument("--config", default=str(ROOT / "config"), help="config folder the DAG ran with")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "cmgrpo.json"))
    parser.add_argument("--threads", type=int, help="torch threads (default: RAVEN_THREADS, else 1; raven.runtime)")
    args = parser.parse_args(argv)
    from host import machine

    from raven.io import atomic_write_json
    from raven.runtime import apply_thread_policy

    apply_thread_policy(args.threads)
    started = time.perf_counter()
    results = Path(args.results or ROOT / "results" / args.scale)
    try:
        report = build_report(results, args.scale, Path(args.config))
    except FileNotFoundError as error:
        sys.exit(str(error))
    report.update(wall_s=round(time.perf_counter() - started, 1), machine=machine(),
                  command=shlex.join([".venv/bin/python", "benchmarks/cmgrpo.py",
                                      *(sys.argv[1:] if argv is None else argv)]))
    atomic_write_json(args.out, report)
    print({key: report[key] for key in ("reward_before", "reward_after", "reward_rise", "reward_rise_ci",
                                        "reward_rise_significant", "total_before", "total_after")})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
