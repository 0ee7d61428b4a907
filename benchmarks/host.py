"""The machine a benchmark ran on, for every report's `machine` key."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows (often empty)."""
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor()


def machine(**extra) -> dict:
    """Platform, CPU model and the vector instructions torch's CPU kernels use (two 2-core machines of this
    workplace ran the same tiny jobs about a factor two apart), CPUs, Python and torch versions, torch threads
    and the load average (other jobs on shared cores slow every stage: budgets are wall-clock training
    seconds), plus `extra`."""
    import torch

    return {"platform": platform.platform(), "processor": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg(), **extra}
