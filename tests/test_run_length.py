"""A run is its spec, seed and iteration count (issue 18): the same stage gives bit-identical weights on a
slowed, busy process whose time guard stops and resumes it; a row's chain gives the same row JSON twice;
one torch thread per process unless RAVEN_THREADS says otherwise; a row or table built on a run that a
guard stopped short says so."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager, nullcontext

import pytest
import torch
from safetensors.torch import load_file

from raven.cli import main
from raven.config import ConfigError, resolve_spec, write_spec
from raven.data.prompts import write_prompt_file
from raven.runtime import BUDGET_EXIT_STATUS, NATIVE_THREAD_ENVS, THREADS_ENV, apply_thread_policy
from raven.world.grammar import prompt_text, sample_prompts

TRAIN = [prompt_text(p) for p in sample_prompts(4, "train", seed=0)]
HELDOUT = [prompt_text(p) for p in sample_prompts(2, "heldout", seed=0)]


@contextmanager
def busy_thread():
    """A competing thread that spins in Python (holding the GIL most of the time): every step of the
    training process runs slower and at other moments than without it."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(10_000))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    """One MLflow store for the module's runs (creating a store's tables takes longer than these runs)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def chain_inputs(repo_root, folder, tracking_uri, **dmd):
    """In `folder`, with paths relative to it: the row `raven`'s smoke spec, prompt files and a random ODE-init
    student whose summary names the base (the critic's init)."""
    from raven.models import build_transformer

    folder.mkdir(parents=True, exist_ok=True)
    overrides = {"tracking_uri": tracking_uri, "results_dir": "results", "stages": {"dmd": dmd}}
    spec = resolve_spec(repo_root / "config", "smoke", "raven", overrides)
    write_spec(spec, folder / "spec.yaml")
    write_prompt_file(folder / "train.txt", TRAIN)
    write_prompt_file(folder / "heldout.txt", HELDOUT)
    torch.manual_seed(0)
    model = build_transformer(spec)
    model.save_pretrained(folder / "base" / "model_ema")
    model.save_pretrained(folder / "ode_init" / "model")
    (folder / "ode_init" / "summary.json").write_text(json.dumps({"init": "base/model_ema"}))


def train_dmd(*extra: str) -> int:
    return main(["train", "dmd", "--spec", "spec.yaml", "--init", "ode_init/model", "--prompts", "train.txt",
                 "--out", "dmd", *extra])


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(next(folder.glob("*.safetensors"))))


def assert_identical(a, b) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_stage_slowed_and_stopped_by_its_guard_resumes_to_bit_identical_weights(repo_root, tmp_path, monkeypatch,
                                                                                  capsys, tracking_uri):
    chain_inputs(repo_root, tmp_path / "plain", tracking_uri)
    monkeypatch.chdir(tmp_path / "plain")
    assert train_dmd() == 0
    # the same stage on a busy process whose guard fires after every iteration: exit status 3 and no
    # model each time (through `raven launch` as in the DAG, then by hand), until all 4 iterations are done
    chain_inputs(repo_root, tmp_path / "slowed", tracking_uri, budget_s=1e-9)
    monkeypatch.chdir(tmp_path / "slowed")
    with busy_thread():
        launched = main(["launch", "--spec", "spec.yaml", "--stage", "dmd", "--launcher", '{"name": "debug"}',
                         "--logs", "logs", "--", "train", "dmd", "--spec", "spec.yaml", "--init", "ode_init/model",
                         "--prompts", "train.txt", "--out", "dmd"])
        assert launched == BUDGET_EXIT_STATUS and not (tmp_path / "slowed/dmd/model").exists()
        assert "raven launch: dmd stopped by its time guard" in capsys.readouterr().err
        codes = [train_dmd() for _ in range(3)]
    assert codes == [BUDGET_EXIT_STATUS] * 2 + [0]
    summary = json.loads((tmp_path / "slowed/dmd/summary.json").read_text())
    assert (summary["iterations"], summary["iterations_target"], summary["resumed_from"]) == (4, 4, 3)
    assert not summary["stopped_by_budget"] and summary["threads"] == 1
    for folder in ("model", "model_ema"):
        assert_identical(weights(tmp_path / "plain/dmd" / folder), weights(tmp_path / "slowed/dmd" / folder))


def run_chain(config_dir) -> bytes:
    """The row `raven` from its ODE init on: DMD, samples, toy-world benchmark, row JSON."""
    assert train_dmd() == 0
    assert main(["sample", "--spec", "spec.yaml", "--model", "dmd/model_ema", "--prompts", "heldout.txt",
                 "--out", "samples"]) == 0
    assert main(["eval", "toy", "--spec", "spec.yaml", "--samples", "samples", "--out", "toy.json"]) == 0
    assert main(["eval", "row", "--spec", "spec.yaml", "--row", "raven", "--metrics", "toy.json",
                 "--training", "dmd/summary.json", "--config-dir", str(config_dir)]) == 0
    return open("results/smoke/rows/raven.json", "rb").read()


def test_two_runs_of_a_rows_chain_give_the_same_row_json(repo_root, tmp_path, monkeypatch, tracking_uri):
    rows = []
    for name, load in (("first", False), ("busy", True)):
        chain_inputs(repo_root, tmp_path / name, tracking_uri)
        monkeypatch.chdir(tmp_path / name)
        with busy_thread() if load else nullcontext():
            rows.append(run_chain(repo_root / "config"))
    assert rows[0] == rows[1]
    row = json.loads(rows[0])
    assert row["training"] == {"dmd/summary.json": {"stage": "dmd", "iterations": 4, "iterations_target": 4,
                                                     "stopped_by_budget": False, "seed": 0}}
    assert row["stopped_by_budget"] is False


def test_one_torch_thread_per_process_unless_raven_threads_says_otherwise(monkeypatch, tmp_path, capsys):
    for name in NATIVE_THREAD_ENVS:  # the policy sets them; monkeypatch restores them after the test
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    try:
        monkeypatch.delenv(THREADS_ENV, raising=False)
        assert apply_thread_policy() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_ENV, "2")
        spec = tmp_path / "spec.yaml"
        assert main(["spec", "--scale", "smoke", "--out", str(spec)]) == 0  # every raven command applies it
        assert torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == "2"  # and hands it to the processes it starts
        monkeypatch.setenv(THREADS_ENV, "two")
        with pytest.raises(ConfigError, match="RAVEN_THREADS='two'"):
            apply_thread_policy()
        assert main(["spec", "--scale", "smoke", "--out", str(spec)]) == 2
        assert "RAVEN_THREADS='two'" in capsys.readouterr().err
    finally:
        torch.set_num_threads(1)


def test_a_row_built_on_a_short_run_says_so_in_its_json_and_every_table():
    import csv

    from raven.evaluation.rows import training_record
    from raven.tables import build_table, to_csv, to_markdown

    record = training_record({
        "train/raven/summary.json": {"stage": "dmd", "iterations": 35, "iterations_target": 240,
                                     "stopped_by_budget": True, "seed": 0, "train_s": 120.0},
        "init/base/summary.json": {"stage": "base", "iterations": 8533, "iterations_target": 8533,
                                   "stopped_by_budget": False, "seed": 0},
    })
    assert record["stopped_by_budget"] is True and "train_s" not in record["training"]["train/raven/summary.json"]
    assert list(record["training"]) == ["init/base/summary.json", "train/raven/summary.json"]
    scores = {"total": 0.8, "quality": 0.8, "semantic": 0.5, "dyn_deg": 3.0}
    records = build_table("main", {"raven": {**scores, **record}, "causvid": scores}, {})
    text = to_markdown("main", records, "tiny")
    assert "| raven (stopped short) |" in text and "| causvid |" in text and "Not complete results" in text
    lines = {line["row"]: line for line in csv.DictReader(to_csv(records).splitlines())}
    assert lines["raven"]["stopped_by_budget"] == "True" and lines["causvid"]["stopped_by_budget"] == "False"
    assert "Not complete" not in to_markdown("main", records[1:], "tiny")
