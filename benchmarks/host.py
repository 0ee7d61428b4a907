"""The machine a benchmark ran on, for every report's `machine` key."""

from __future__ import annotations

import os
import platform


def machine(**extra) -> dict:
    """Platform, CPUs, Python and torch versions, torch threads and the load average (other jobs on shared
    cores slow every stage: budgets are wall-clock training seconds), plus `extra`."""
    import torch

    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg(), **extra}
