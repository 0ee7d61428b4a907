"""Every `raven` command the DAG would run, at every scale, parses with the `raven` parser: flags of the rules
and of the CLI agree (a rule passing `--videos` to a command that takes `--samples` fails here, not on the
cluster). One dry run per scale; `raven launch ... -- <stage>` is checked as both commands."""

from __future__ import annotations

import shlex

import pytest
from test_dag_dryrun import dry_run, shell_commands

from raven.cli import build_parser

SHELL_OPERATORS = {">", "2>", ">>", "&&", "||", "|", ";", "2>&1"}


def raven_commands(command: str) -> list[list[str]]:
    """argv (without `raven`) of each `raven` invocation in a shell line; a launch wraps a second one."""
    found, current = [], None
    for token in shlex.split(command):
        if token in SHELL_OPERATORS:
            current = None
        elif current is None:
            if token == "raven":
                current = []
                found.append(current)
        else:
            current.append(token)
    commands = []
    for argv in found:
        if argv[:1] == ["launch"] and "--" in argv:
            split = argv.index("--")
            commands += [argv[:split + 2], argv[split + 1:]]  # launch needs one word after --
        else:
            commands.append(argv)
    return commands


def test_raven_commands_are_found_in_shell_lines():
    line = ("raven launch --spec s.yaml --stage sample --logs l -- sample --spec s.yaml --model m --out o > log 2>&1 "
            "&& touch done")
    assert raven_commands(line) == [["launch", "--spec", "s.yaml", "--stage", "sample", "--logs", "l", "--", "sample"],
                                    ["sample", "--spec", "s.yaml", "--model", "m", "--out", "o"]]


@pytest.mark.parametrize("profile, scale", [("local", "smoke"), ("local", "tiny"), ("slurm", "paper")])
def test_every_raven_command_of_the_dry_run_parses(tmp_path, profile, scale):
    output = dry_run(profile, tmp_path, "all", scale=scale)
    parser = build_parser()
    checked = set()
    for line in shell_commands(output):
        for argv in raven_commands(line):
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"`raven {shlex.join(argv)}` (rule shell line: {line}) does not parse")
            checked.add(tuple(argv[:2]))
    stages = {argv[0] for argv in checked}
    assert {"spec", "launch", "sample", "eval", "tables"} <= stages, stages
    if scale == "paper":
        assert {("eval", "vbench-protocol"), ("eval", "vbench"), ("eval", "unified-reward")} <= checked
