"""The `raven` command: one subcommand per stage. Every Snakemake rule calls it; logic lives in the library.

Each stage module defines `register(subparsers)` and imports heavy libraries only inside its handlers,
so that `raven --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from raven import __version__

STAGE_MODULES = ["spec", "data", "train", "ode", "launch", "tables", "report", "weights", "sample", "eval", "userstudy", "preflight"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raven", description="RAVEN reproduction pipeline: one subcommand per stage.")
    parser.add_argument("--version", action="version", version=f"raven {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name in STAGE_MODULES:
        importlib.import_module(f"raven.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one stage command under the one thread policy (raven.runtime: RAVEN_THREADS, default 1).
    Exit status 2: bad input; 3: a training stage stopped short by its time guard (resume by rerunning)."""
    from raven.config import ConfigError
    from raven.runtime import BUDGET_EXIT_STATUS, BudgetExceeded, apply_thread_policy

    args = build_parser().parse_args(argv)
    try:
        apply_thread_policy()
        return int(args.handler(args) or 0)
    except (ConfigError, FileNotFoundError) as error:
        print(f"raven {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BudgetExceeded as error:
        print(f"raven {args.command}: stopped: {error}", file=sys.stderr)
        return BUDGET_EXIT_STATUS
