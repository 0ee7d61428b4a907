"""`raven launch`: run another `raven` stage command as a submitit job (local, debug or SLURM)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "launch", help="run a stage through submitit: raven launch --spec S --stage NAME --logs DIR -- <stage args>",
        description="Submit `raven <stage args>` with the launcher of the run spec (launcher.name: local, debug, "
                    "slurm) and wait for it. A job still running from an earlier call with the same arguments "
                    "and --logs is reattached, not submitted again.")
    parser.add_argument("--spec", required=True, help="resolved run spec; its 'launcher' section is used")
    parser.add_argument("--stage", required=True, help="job name and key of the spec's per-stage 'launchers' overrides, e.g. dmd")
    parser.add_argument("--launcher", default="{}", metavar="JSON",
                        help="launcher keys merged over the spec's, e.g. '{\"name\": \"slurm\"}' (from the profile)")
    parser.add_argument("--logs", required=True, help="folder for submitit files, job logs and job.json")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the raven subcommand and its arguments")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from raven.config import ConfigError, read_spec
    from raven.launch import launch, launcher_for
    from raven.runtime import BUDGET_EXIT_STATUS

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ConfigError("raven launch: no stage command given; usage: raven launch ... -- train dmd --spec S ...")
    try:
        overrides = json.loads(args.launcher)
    except json.JSONDecodeError as error:
        raise ConfigError(f"raven launch --launcher {args.launcher!r}: not JSON ({error})") from None
    result = launch(launcher_for(read_spec(args.spec), args.stage, overrides), args.stage, command, args.logs)
    if result == BUDGET_EXIT_STATUS:
        print(f"raven launch: {args.stage} stopped by its time guard before its iteration count; its checkpoint is "
              f"saved and rerunning resumes it (the job's log in {args.logs} and the stage's stopped.json say more)",
              file=sys.stderr)
        return BUDGET_EXIT_STATUS
    return 0
