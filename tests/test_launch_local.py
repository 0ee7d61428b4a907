"""`raven launch` with the debug and local submitit executors: distributed env, logs, reattach."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

from raven.config import ConfigError
from raven.config.spec import LauncherSpec
from raven.launch import make_executor, submit_and_wait

REPO = Path(__file__).resolve().parents[1]
RAVEN = [str(Path(sys.executable).with_name("raven"))]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # jobs unpickle the workloads below by value


class DistributedEnv(submitit.helpers.Checkpointable):
    """Reports the torchrun-style variables each task exports (as a stage job does before running)."""

    def __call__(self) -> dict:
        from raven.launch.submit import export_distributed_env

        return export_distributed_env()


class Steps(submitit.helpers.Checkpointable):
    """Counts `steps` seconds in a progress file and resumes from it, like a stage resuming a checkpoint."""

    def __init__(self, progress: str, steps: int) -> None:
        self.progress, self.steps = progress, steps

    def __call__(self) -> int:
        path = Path(self.progress)
        done = int(path.read_text()) if path.exists() else 0
        with open(f"{self.progress}.starts", "a") as starts:
            starts.write(f"{done}\n")
        while done < self.steps:
            time.sleep(1)
            done += 1
            path.write_text(str(done))
        return done


def raven(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*RAVEN, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", ["debug", "local"])
def test_launch_runs_a_stage_and_records_the_job(tmp_path, name):
    spec = tmp_path / "spec.yaml"
    assert raven("spec", "--config-dir", str(REPO / "config"), "--scale", "smoke", "--set", f"launcher.name={name}",
                 "--out", str(spec), cwd=tmp_path).returncode == 0
    result = raven("launch", "--spec", str(spec), "--stage", "prompts", "--logs", "logs", "--",
                   "data", "prompts", "--spec", str(spec), "--out-train", "p/train.txt", "--out-heldout", "p/held.txt",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "p/train.txt").read_text().splitlines()) == 32  # smoke: stages.data.train_prompts
    record = json.loads((tmp_path / "logs/job.json").read_text())
    assert record["launcher"] == name and record["argv"][:2] == ["data", "prompts"]
    assert any(p.name.endswith("_log.err") for p in (tmp_path / "logs").iterdir())


def test_a_failing_stage_fails_the_launch(tmp_path):
    spec = tmp_path / "spec.yaml"
    raven("spec", "--config-dir", str(REPO / "config"), "--scale", "smoke", "--out", str(spec), cwd=tmp_path)
    result = raven("launch", "--spec", str(spec), "--stage", "clips", "--logs", "logs", "--",
                   "data", "clips", "--spec", str(spec), "--prompts", "missing.txt", "--out", "clips", cwd=tmp_path)
    assert result.returncode != 0
    assert "missing.txt" in result.stderr + result.stdout
    assert not (tmp_path / "clips/summary.json").exists()


def test_local_tasks_get_the_distributed_environment_and_one_gpu_each(tmp_path):
    launcher = LauncherSpec(name="local", gpus_per_node=2, timeout_min=5)
    executor = make_executor(launcher, tmp_path, "env")
    # submitit lists the node's GPUs "0,1" for every task; each task keeps only its own
    ranks = executor.submit(DistributedEnv()).results()
    assert [r["RANK"] for r in ranks] == ["0", "1"] and {r["WORLD_SIZE"] for r in ranks} == {"2"}
    assert [r["LOCAL_RANK"] for r in ranks] == ["0", "1"] and len({r["MASTER_PORT"] for r in ranks}) == 1
    assert [r["CUDA_VISIBLE_DEVICES"] for r in ranks] == ["0", "1"]


def test_a_restarted_launch_reattaches_to_the_running_job(tmp_path):
    progress = str(tmp_path / "progress")
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "import test_launch_local as t\n"
        "from raven.launch import submit_and_wait\n"
        "from raven.config.spec import LauncherSpec\n"
        "print(submit_and_wait(LauncherSpec(name='local', timeout_min=5), 'steps', t.Steps(%r, 6), ['steps'], %r))\n"
    ) % (str(Path(__file__).parent), progress, str(tmp_path / "logs"))
    first = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=True)
    while not Path(progress).exists():
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # Snakemake killed: the local job's controller keeps running
    first.wait()
    job_id = json.loads((tmp_path / "logs/job.json").read_text())["job_id"]
    result = submit_and_wait(LauncherSpec(name="local", timeout_min=5), "steps", Steps(progress, 6), ["steps"],
                             tmp_path / "logs")
    assert result == 6
    assert json.loads((tmp_path / "logs/job.json").read_text())["job_id"] == job_id
    assert Path(progress + ".starts").read_text() == "0\n"  # one start: no second submission


def test_multi_node_needs_slurm(tmp_path):
    with pytest.raises(ConfigError, match="launcher.nodes"):
        make_executor(LauncherSpec(name="local", nodes=2), tmp_path, "x")
