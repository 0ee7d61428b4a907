"""Process-wide run policies shared by every entry point: torch threads, and the training guard's exit.

Threads: every process (a Snakemake rule's `raven` command, a `raven launch` job, a `raven train ...`
typed by hand, a benchmark) runs `RAVEN_THREADS` torch threads, 1 by default. On a small CPU machine
one thread per process is faster than torch's default (all cores) and keeps a busy machine from
slowing every job down; on a GPU node the CPU threads matter little. The count is recorded in every
training summary. This module imports nothing heavy, so `raven --help` stays fast.
"""

from __future__ import annotations

import os
import sys

from raven.config import ConfigError

THREADS_ENV = "RAVEN_THREADS"
DEFAULT_THREADS = 1
# Variables read by the OpenMP / MKL runtimes when torch is first imported; set to the same count.
NATIVE_THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
BUDGET_EXIT_STATUS = 3  # `raven` exits with this when a training stage's time guard stopped it short


class BudgetExceeded(RuntimeError):
    """A training stage's time guard (`budget_s`) stopped it before its iteration count, with
    `on_budget: fail`: its checkpoint is saved, no model is exported; the message says how to resume."""


def configured_threads() -> int:
    """The torch thread count of this process: `RAVEN_THREADS`, else 1."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return DEFAULT_THREADS
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ConfigError(f"environment variable {THREADS_ENV}={value!r}: expected a positive integer "
                          f"(torch threads per process; unset it for the default {DEFAULT_THREADS})")
    return threads


def apply_thread_policy(threads: int | None = None) -> int:
    """Use `threads` (default: `configured_threads()`) torch threads in this process and in every process
    it starts (exported as RAVEN_THREADS and the OpenMP/MKL variables); returns the count."""
    count = configured_threads() if threads is None else int(threads)
    if count < 1:
        raise ConfigError(f"torch threads must be >= 1, got {count}")
    for name in (THREADS_ENV, *NATIVE_THREAD_ENVS):
        os.environ[name] = str(count)
    if "torch" in sys.modules:  # already imported: the variables above came too late for it
        sys.modules["torch"].set_num_threads(count)
    return count
