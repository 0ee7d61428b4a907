"""`raven launch` through a real single-node SLURM (Debian slurm-wlm + munge on loopback).

The fixture writes a slurm.conf for this host, starts munged, slurmctld and slurmd as the current
user, and stops them afterwards. Requeued jobs wait `cred_expire` seconds before they may start
again (SLURM's requeue delay), so it is set low.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local_services import free_port

from raven.config.spec import LauncherSpec
from raven.launch import submit_and_wait

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
RAVEN = str(Path(sys.executable).with_name("raven"))
DAEMONS = ("munged", "slurmctld", "slurmd")



def slurm_conf(root: Path, host: str) -> str:
    return f"""ClusterName=ravenci
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge/socket,cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmUser={os.environ.get("USER", "root")}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
JobRequeue=1
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=ci Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm_cluster(tmp_path_factory, monkeypatch):
    missing = [d for d in DAEMONS if shutil.which(d, path="/usr/sbin:/usr/bin:" + os.environ["PATH"]) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and Debian slurm-wlm + munge (missing: {missing}); run `make sysdeps`")
    root = Path(tmp_path_factory.mktemp("slurm"))
    for sub in ("state", "spool", "run", "log", "munge"):
        (root / sub).mkdir()
    key = root / "munge/munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, socket.gethostname().split(".")[0]))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    subprocess.run(["/usr/sbin/munged", "--force", f"--socket={root}/munge/socket", f"--key-file={key}",
                    f"--log-file={root}/log/munged.log", f"--pid-file={root}/run/munged.pid",
                    f"--seed-file={root}/munge/seed"], check=True)
    subprocess.run(["/usr/sbin/slurmctld", "-f", str(conf)], check=True)
    subprocess.run(["/usr/sbin/slurmd", "-f", str(conf)], check=True)
    try:
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout:
            assert time.time() < deadline, (root / "log/slurmctld.log").read_text()[-2000:]
            time.sleep(1)
        yield root
    finally:
        subprocess.run(["scancel", "--partition=ci"], capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = root / f"run/{name}.pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_launch_submits_through_sbatch(slurm_cluster, tmp_path):
    spec = tmp_path / "spec.yaml"
    subprocess.run([RAVEN, "spec", "--config-dir", str(REPO / "config"), "--scale", "smoke", "--set",
                    "launcher={\"name\": \"slurm\", \"mem_gb\": 0.5, \"cpus_per_task\": 1, \"timeout_min\": 5}",
                    "--out", str(spec)], check=True, cwd=tmp_path)
    result = subprocess.run([RAVEN, "launch", "--spec", str(spec), "--stage", "prompts", "--logs", "logs", "--",
                             "data", "prompts", "--spec", str(spec), "--out-train", "p/train.txt",
                             "--out-heldout", "p/held.txt"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "logs/job.json").read_text())
    assert record["launcher"] == "slurm" and record["job_id"].isdigit()
    assert "#SBATCH --partition" not in (tmp_path / f"logs/{record['job_id']}_submission.sh").read_text()
    assert len((tmp_path / "p/train.txt").read_text().splitlines()) == 32


def test_a_job_past_its_time_limit_is_requeued_and_resumes(slurm_cluster, tmp_path):
    from test_launch_local import Steps

    # SLURM warns the job (SIGUSR2) 30 s + its 30 s check period before the 2-minute limit; submitit
    # requeues it and the second run resumes from the progress file.
    launcher = LauncherSpec(name="slurm", timeout_min=2, signal_delay_s=30, mem_gb=0.5, cpus_per_task=1, max_requeues=3)
    progress = tmp_path / "progress"
    assert submit_and_wait(launcher, "steps", Steps(str(progress), 120), ["steps"], tmp_path / "logs") == 120
    starts = [int(line) for line in Path(f"{progress}.starts").read_text().split()]
    assert len(starts) >= 2 and starts[0] == 0 and 0 < starts[1] < 120
    assert "timed-out" in "".join(p.read_text() for p in (tmp_path / "logs").glob("*_log.err"))
