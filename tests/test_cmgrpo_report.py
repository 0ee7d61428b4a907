"""benchmarks/cmgrpo.py on real sample folders of rendered toy videos with known answers: "after" videos
match their prompts, "before" videos are rendered from other prompts, so text alignment (and the aggregate
reward) must rise beyond the noise; identical folders must show no rise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from raven.config import load_experiments, replica_name
from raven.evaluation.samples import write_samples
from raven.io import atomic_write_json, read_json
from raven.rewards import REWARD_NAMES, RewardSources, build_rewards
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.render import render

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import cmgrpo  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

HEIGHT, WIDTH, FRAMES, FPS = 16, 16, 9, 8
WEIGHTS = {"videoalign_TA": 2.0, "raft_RAFT": 0.35, "ms_MS": 0.75, "aq_AES": 1.0, "iq_IMG": 1.0}


def prompts(count: int) -> list[str]:
    return [prompt_text(p) for p in sample_prompts(count, "heldout", seed=0)]


def write_replica(folder: Path, asked: list[str], samples: int, seed: int, wrong: bool = False) -> Path:
    """`samples` videos per asked prompt; `wrong`: each rendered from the next prompt instead of its own."""
    shown = asked[1:] + asked[:1] if wrong else asked
    names = [p for p in asked for _ in range(samples)]
    sources = [p for p in shown for _ in range(samples)]
    seeds = [seed + i for i in range(len(names))]
    videos = np.stack([render(source, s, HEIGHT, WIDTH, FRAMES, FPS) for source, s in zip(sources, seeds)])
    write_samples(folder, videos, names, seeds, FPS)
    return folder


def units(folders: list[Path]):
    rewards = build_rewards(list(REWARD_NAMES), RewardSources())
    return cmgrpo.weighted_units([cmgrpo.score_replica(f, rewards, False)[0] for f in folders], WEIGHTS)


def test_matching_videos_raise_the_reward_beyond_the_noise(tmp_path):
    asked = prompts(8)
    after = units([write_replica(tmp_path / f"after{k}", asked, 2, 100 * k) for k in range(2)])
    before = units([write_replica(tmp_path / f"before{k}", asked, 2, 100 * k, wrong=True) for k in range(2)])
    report = cmgrpo.learning(after, before, REWARD_NAMES)
    assert report["reward_rise"] > 0 and report["reward_rise_ci"][0] > 0 and report["reward_rise_significant"]
    assert report["reward_rise"] == pytest.approx(report["reward_after"] - report["reward_before"])
    assert report["rewards_after"]["videoalign_TA"] == pytest.approx(1.0)  # renders match their prompts exactly
    assert report["rewards_change_ci"]["videoalign_TA"][0] > 0 and report["rewards_change_significant"]["videoalign_TA"]
    # the aggregate is Σ w_m r_m / Σ |w_m| of the per-reward means (the same prompts and videos per prompt)
    expected = sum(w * report["rewards_after"][m] for m, w in WEIGHTS.items()) / sum(WEIGHTS.values())
    assert report["reward_after"] == pytest.approx(expected)
    assert after.prompts == tuple(asked) and after.seeds == 2


def test_identical_folders_show_no_rise(tmp_path):
    asked = prompts(8)
    same = units([write_replica(tmp_path / f"s{k}", asked, 2, 100 * k) for k in range(2)])
    report = cmgrpo.learning(same, same, REWARD_NAMES)
    low, high = report["reward_rise_ci"]
    assert report["reward_rise"] == pytest.approx(0.0) and low <= 0.0 <= high and not report["reward_rise_significant"]
    assert all(v == pytest.approx(0.0) for v in report["rewards_change"].values())


def dag_results(root: Path, rows: list[str], seeds: int, asked: list[str]) -> Path:
    """The DAG's outputs the report reads, for every row's replicas: samples, and CM-GRPO training summaries."""
    for row in rows:
        for k in range(seeds):
            replica = replica_name(row, k)
            write_replica(root / "samples" / replica, asked, 1, 1000 * k, wrong=row == "raven")
            if row != "raven":
                weights = load_experiments(REPO / "config")[row]["overrides"]["stages"]["cmgrpo"]["reward_weights"]
                atomic_write_json(root / "train" / replica / "summary.json",
                                  {"stage": "cmgrpo", "iterations": 40, "iterations_target": 40,
                                   "stopped_by_budget": False, "reward_weights": weights,
                                   "last_metrics": {"reward_gap/aggregate": 0.5 + k}})
    return root


def test_report_from_the_dags_replicas(tmp_path):
    seeds = 3  # the tiny scale's
    ablations = [row for row, s in load_experiments(REPO / "config").items()
                 if row.startswith("rw_") and s.get("method") == "cmgrpo" and s.get("from") == "raven"]
    assert len(ablations) == 4
    results = dag_results(tmp_path / "results", ["raven", "raven_cmgrpo", *ablations], seeds, prompts(4))
    out = tmp_path / "cmgrpo.json"
    cmgrpo.main(["--results", str(results), "--scale", "tiny", "--out", str(out)])
    report = read_json(out)
    assert report["seeds"] == 3 and report["heldout_prompts"] == 4 and report["samples_per_prompt"] == 1
    assert report["before_replicas"] == ["raven", "raven@s1", "raven@s2"]
    assert report["replicas"] == ["raven_cmgrpo", "raven_cmgrpo@s1", "raven_cmgrpo@s2"]
    assert report["reward_weights"] == WEIGHTS and report["iterations"] == [40, 40, 40]
    assert report["reward_gap"] == pytest.approx(1.5) and not report["stopped_by_budget"]
    assert report["reward_rise"] > 0 and len(report["reward_rise_ci"]) == 2
    assert report["total_source"] == {"before": "samples", "after": "samples"}
    assert report["total_rise"] > 0  # the toy-world Total's semantic half sees the wrong renders too
    assert [a["row"] for a in report["ablations"]] == ablations
    assert all(a["reward_rise"] > 0 for a in report["ablations"])
    assert {"machine", "command", "rewards_before", "rewards_change_ci", "total_after_ci"} <= set(report)

    # Row JSONs with per-seed, per-prompt units (`raven eval row`) are read instead of benchmarking again.
    from raven.evaluation.rows import pool_replicas
    from raven.evaluation.samples import read_samples
    from raven.evaluation.toy import benchmark

    for row in ("raven", "raven_cmgrpo"):
        samples = [read_samples(results / "samples" / replica_name(row, k)) for k in range(seeds)]
        pooled, spread = pool_replicas([benchmark(s.videos, s.prompts, FPS) for s in samples])
        atomic_write_json(results / "rows" / f"{row}.json", {"row": row, "total": pooled["total"], **spread})
    cmgrpo.main(["--results", str(results), "--scale", "tiny", "--out", str(out)])
    again = read_json(out)
    assert again["total_source"]["before"].endswith("rows/raven.json")
    assert again["total_before"] == pytest.approx(report["total_before"], abs=1e-5)  # JSON keeps 6 decimals
    assert again["total_rise_ci"] == pytest.approx(report["total_rise_ci"], abs=1e-5)


def test_a_missing_replica_names_its_folder_and_the_target_that_makes_it(tmp_path):
    results = tmp_path / "results"
    (results / "samples").mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as error:
        cmgrpo.build_report(results, "tiny")
    message = str(error.value)
    assert f"{results / 'samples' / 'raven@s1'}: missing" in message
    assert f"snakemake --profile local {results / 'samples' / 'raven@s1' / 'summary.json'}" in message
    assert f"snakemake --profile local {results / 'train' / 'raven_cmgrpo@s2' / 'summary.json'}" in message
