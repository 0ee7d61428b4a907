"""Run one `raven` stage command as a submitit job: in-process, as a local process, or on SLURM.

The launcher never knows what the stage does. It exports the torch.distributed environment (one
task per GPU), records the job id so that a restarted Snakemake waits on a job that is still
running instead of submitting it twice, and on preemption or timeout requeues the same command:
every stage resumes from its last checkpoint when rerun on the same output folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import submitit

from raven.config import ConfigError, deep_merge, validate
from raven.config.spec import LauncherSpec, RunSpec
from raven.io import atomic_write_json

RECORD = "job.json"
POLL_S = 5.0  # the longest wait between two polls of a SLURM job: each poll is an squeue call
# a local job's poll is a stat and a kill(pid, 0): its result is seen within this, not up to POLL_S later
# (a 5 s cap idled a DAG slot for about 2 s after each of the tiny DAG's 150 launched jobs)
LOCAL_POLL_S = 0.25
# squeue states of a job that will still produce a result (a requeued job is PENDING again)
ACTIVE_SLURM_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                       "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "PREEMPTED"}


class LaunchError(RuntimeError):
    """The job ended without a result; the message names its logs."""


def export_distributed_env() -> dict[str, str]:
    """Export RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT for this task
    (torchrun's names), and give it its own GPU when the node's GPUs are listed for every task."""
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    if len(devices) == env.local_world_size > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[env.local_rank]
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES")
    return {key: os.environ[key] for key in keys if key in os.environ}


class StageCommand(submitit.helpers.Checkpointable):
    """`raven <argv>` run inside a submitit task, with the torch.distributed environment exported.

    Checkpointable: on preemption/timeout submitit requeues this same command (`checkpoint`
    returns it unchanged) and the stage resumes from the checkpoints in its output folder.
    """

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def __call__(self) -> int:
        from raven.cli import main
        from raven.runtime import BUDGET_EXIT_STATUS

        export_distributed_env()
        code = main(self.argv)
        if code == BUDGET_EXIT_STATUS:  # stopped by its time guard, checkpoint saved: rerunning resumes it
            return code
        if code:
            raise RuntimeError(f"`raven {' '.join(self.argv)}` exited with status {code}")
        return code


def launcher_for(spec: RunSpec, stage: str, overrides: dict | None = None) -> LauncherSpec:
    """`spec.launcher`, then the stage's `spec.launchers[stage]` (e.g. more GPUs for dmd), then `overrides`."""
    merged = deep_merge(deep_merge(spec.launcher.model_dump(), spec.launchers.get(stage, {})), overrides or {})
    return validate(LauncherSpec, merged, f"launcher of stage {stage!r} (spec 'launcher' + 'launchers.{stage}' + --launcher)")


def make_executor(launcher: LauncherSpec, folder: Path, name: str) -> submitit.AutoExecutor:
    """A submitit executor for `launcher` (spec key `launcher`) writing its files under `folder`."""
    if launcher.name != "slurm" and launcher.nodes > 1:
        raise ConfigError(f"launcher.nodes = {launcher.nodes} needs launcher.name 'slurm' (got {launcher.name!r})")
    executor = submitit.AutoExecutor(folder=folder, cluster=launcher.name,
                                     slurm_max_num_timeout=launcher.max_requeues)
    executor.update_parameters(
        name=name,
        nodes=launcher.nodes,
        tasks_per_node=launcher.tasks_per_node or max(launcher.gpus_per_node, 1),
        gpus_per_node=launcher.gpus_per_node,
        cpus_per_task=launcher.cpus_per_task,
        mem_gb=launcher.mem_gb,
        timeout_min=launcher.timeout_min,
    )
    if launcher.name == "slurm":
        executor.update_parameters(
            slurm_partition=launcher.partition,
            slurm_account=launcher.account,
            slurm_signal_delay_s=launcher.signal_delay_s,
            slurm_additional_parameters=dict(launcher.extra_sbatch),
        )
    return executor


def slurm_state(job_id: str) -> str | None:
    """The squeue state of a SLURM job, or None once SLURM has forgotten it."""
    result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    state = result.stdout.strip()
    return state.splitlines()[0] if result.returncode == 0 and state else None


def pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def is_active(launcher: str, job_id: str) -> bool:
    if launcher == "slurm":
        return slurm_state(job_id) in ACTIVE_SLURM_STATES
    return pid_alive(job_id)  # a local job's id is the pid of its controller process


def reattach(folder: Path, launcher: str, argv: list[str]) -> submitit.Job | None:
    """The still-running job recorded in `folder` for this same command, if any."""
    path = folder / RECORD
    if launcher == "debug" or not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("argv") != argv or record.get("launcher") != launcher or not is_active(launcher, record["job_id"]):
        return None
    job_class = submitit.SlurmJob if launcher == "slurm" else submitit.LocalJob
    return job_class(folder=folder, job_id=record["job_id"])


def wait_for(job: submitit.Job, launcher: str) -> Any:
    """Block until the job has a result; raise LaunchError if it ended without one."""
    if launcher == "debug":
        return job.result()
    delay, longest = 0.2, (POLL_S if launcher == "slurm" else LOCAL_POLL_S)
    while not job.paths.result_pickle.exists():
        if not is_active(launcher, job.job_id):
            time.sleep(POLL_S)  # the result file may land just after the job leaves the queue
            if job.paths.result_pickle.exists():
                break
            raise LaunchError(f"job {job.job_id} ended without a result; see {job.paths.stderr} and {job.paths.stdout}")
        time.sleep(delay)
        delay = min(2 * delay, longest)
    return job.result()


def submit_and_wait(launcher: LauncherSpec, name: str, function: submitit.helpers.Checkpointable,
                    identity: list[str], folder: str | Path) -> Any:
    """Submit `function` (or reattach to its running job with the same `identity`) and wait for its result."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    job = reattach(folder, launcher.name, identity)
    if job is not None:
        print(f"raven launch: reattaching to running job {job.job_id} of {name!r}", flush=True)
    else:
        job = make_executor(launcher, folder, name).submit(function)
        atomic_write_json(folder / RECORD, {"launcher": launcher.name, "job_id": job.job_id, "argv": identity})
        print(f"raven launch: {name!r} is job {job.job_id} ({launcher.name}); logs in {folder}", flush=True)
    return wait_for(job, launcher.name)


def launch(launcher: LauncherSpec, stage: str, argv: list[str], folder: str | Path) -> Any:
    """Run `raven <argv>` through submitit and wait for it; submitit files and logs go to `folder`."""
    return submit_and_wait(launcher, stage, StageCommand(argv), argv, folder)
