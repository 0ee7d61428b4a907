"""MLflow tracking on the SQLite store: row upserts, training runs, and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from raven.config import resolve_spec
from raven.tracking import find_row_runs, log_row, row_metrics, training_run
from raven.tracking.store import config_hash, flatten, sqlite_path

REPO = Path(__file__).resolve().parents[1]


def spec_at(db: Path, **overrides):
    return resolve_spec(REPO / "config", "smoke", overrides={"tracking_uri": f"sqlite:///{db}", **overrides})


def test_row_rerun_updates_the_same_run(tmp_path):
    spec = spec_at(tmp_path / "m.db")
    artifact = tmp_path / "row.json"
    artifact.write_text('{"total": 0.5}')
    first = log_row(spec, "main", "raven", {"Total": 0.5}, artifacts=[artifact])
    second = log_row(spec, "main", "raven", {"Total": 0.75, "Dyn.Deg": 2.0})
    assert first == second
    (run,) = find_row_runs(spec.tracking_uri, "smoke", "main")
    assert run.data.metrics == {"Total": 0.75, "Dyn.Deg": 2.0}
    assert run.data.tags["table"] == "main" and run.data.tags["row"] == "raven"
    assert run.data.tags["config_hash"] == config_hash(spec.model_dump(mode="json"))
    assert run.data.params["transformer.num_layers"] == "2"
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / "row.json"
    assert stored.read_text() == '{"total": 0.5}'


def test_changed_spec_replaces_the_row_run(tmp_path):
    db = tmp_path / "m.db"
    first = log_row(spec_at(db), "main", "raven", {"Total": 0.5})
    second = log_row(spec_at(db, seed=7), "main", "raven", {"Total": 0.6})
    assert first != second
    (run,) = find_row_runs(f"sqlite:///{db}", "smoke")
    assert run.info.run_id == second and run.data.params["seed"] == "7"


def test_training_run_resumes_and_links_to_its_row(tmp_path):
    spec = spec_at(tmp_path / "m.db", row="raven")
    with training_run(spec, "dmd", tmp_path / "run") as run:
        run.log_metrics(0, {"loss": 2.0})
    with pytest.raises(RuntimeError):
        with training_run(spec, "dmd", tmp_path / "run") as resumed:
            resumed.log_metrics(1, {"loss": 1.0})
            raise RuntimeError("preempted")
    assert resumed.run_id == run.run_id
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    history = client.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0)]
    assert client.get_run(run.run_id).info.status == "FAILED"
    row_run = client.get_run(log_row(spec, "main", "raven", {"Total": 1.0}))
    assert row_run.data.tags["training_runs"] == run.run_id


def _log_one(db: str, index: int) -> None:
    spec = spec_at(Path(db))
    log_row(spec, "reward_weights", f"row{index}", {"Total": float(index)})


def test_concurrent_processes_never_lose_a_row(tmp_path):
    db = str(tmp_path / "m.db")  # fresh store: the processes also race on creating the schema
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_log_one, args=(db, i)) for i in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * 6
    runs = find_row_runs(f"sqlite:///{db}", "smoke", "reward_weights")
    assert sorted(r.data.metrics["Total"] for r in runs) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_row_metrics_and_flatten():
    row = {"total": 0.8, "quality": 0.7, "semantic": None, "dyn_deg": 2.5, "dimensions": {"colour": 1.0}}
    assert row_metrics(row) == {"Total": 0.8, "Quality": 0.7, "Dyn.Deg": 2.5, "dimension/colour": 1.0}
    split = {"two_objects": {"objects": 4, "colour_acc": 1.0, "shape_acc": 0.5, "direction_acc": 0.25}}
    assert row_metrics({**row, "by_objects": split}) == {**row_metrics(row), "objects/two_objects/objects": 4.0,
                                                         "objects/two_objects/colour_acc": 1.0,
                                                         "objects/two_objects/shape_acc": 0.5,
                                                         "objects/two_objects/direction_acc": 0.25}
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {}}) == {"a.b": "1", "a.c": "[1, 2]", "d": "x", "e": "{}"}


def test_only_sqlite_stores_are_accepted():
    with pytest.raises(ValueError, match="only SQLite"):
        sqlite_path("file:///tmp/mlruns")


def test_loss_curves_are_plotted_per_training_run(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    spec = spec_at(tmp_path / "m.db", row="raven")
    with training_run(spec, "dmd", tmp_path / "run") as run:
        for step in range(5):
            run.log_metrics(step, {"loss/critic": 1.0 / (step + 1), "loss/generator": float(step)})
    with training_run(spec, "cmgrpo", tmp_path / "wide") as run:
        run.log_metrics(0, {f"reward/{i}": float(i) for i in range(8)})
    spec_file = tmp_path / "spec.yaml"
    from raven.config import write_spec

    write_spec(spec, spec_file)
    raven = str(Path(sys.executable).with_name("raven"))
    subprocess.run([raven, "report", "loss-curves", "--spec", str(spec_file), "--out-dir", str(tmp_path / "plots")],
                   check=True)
    png, wide = (tmp_path / "plots" / f"{stage}-{tmp_path.name}_{name}.png" for stage, name in
                 (("dmd", "run"), ("cmgrpo", "wide")))  # outside a results folder: the last two path parts
    assert Image.open(png).size == (512, 240)  # two panels of 3.2 x 2.4 inches and a 0.6 inch title, at 80 dpi
    assert Image.open(wide).size == (1536, 432)  # eight panels: six on the first line, two on the second
    assert json.loads((tmp_path / "plots/summary.json").read_text())["plots"] == sorted([png.name, wide.name])


def test_each_training_job_has_its_own_run_name(tmp_path):
    from mlflow.tracking import MlflowClient

    spec = spec_at(tmp_path / "m.db", results_dir=str(tmp_path / "results"))
    names = []
    for init in ("ode_causal", "ode_bidirectional"):
        with training_run(spec, "ode_init", tmp_path / "results/smoke/init" / init / "student") as run:
            run.log_metrics(0, {"loss": 1.0})
        names.append(MlflowClient(spec.tracking_uri).get_run(run.run_id).info.run_name)
    assert names == ["ode_init:init/ode_causal/student", "ode_init:init/ode_bidirectional/student"]
