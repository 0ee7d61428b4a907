"""Every `raven` command the DAG would run, at every scale, parses with the `raven` parser: flags of the rules
and of the CLI agree (a rule passing `--videos` to a command that takes `--samples` fails here, not on the
cluster). One dry run per scale: paper and smoke in test_dag_dryrun.py (which call
`assert_every_raven_command_parses`), tiny here; `raven launch ... -- <stage>` is checked as both commands."""

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


def assert_every_raven_command_parses(output: str, scale: str) -> None:
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
    else:
        assert {("eval", "vbench-protocol"), ("eval", "toy")} <= checked


def test_every_raven_command_of_the_tiny_dry_run_parses(tmp_path):
    assert_every_raven_command_parses(dry_run("local", tmp_path, "all", scale="tiny"), "tiny")


def test_rows_that_run_the_same_thing_train_once_and_every_label_prints_that_run(tmp_path):
    """A copy of the workflow whose experiments.yaml gains `raven_twin`, the `raven` row under another name, and
    a table printing both: one DMD job, and the twin's label prints the raven run."""
    import shutil
    import subprocess

    import yaml

    from test_dag_dryrun import ENV, REPO

    for name in ("Snakefile", "workflow", "config", "profiles"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, tmp_path / name)
    (tmp_path / "local").symlink_to("profiles/local")
    experiments = yaml.safe_load((tmp_path / "config/experiments.yaml").read_text())
    experiments["rows"]["raven_twin"] = {**experiments["rows"]["raven"], "recipe": "the same run"}
    experiments["tables"]["chunk_weighting"]["twin"] = "raven_twin"
    (tmp_path / "config/experiments.yaml").write_text(yaml.safe_dump(experiments, sort_keys=False))
    result = subprocess.run(["snakemake", "--profile", "local", "-n", "--nolock", "--config", "scale=smoke",
                             f"results_dir={tmp_path / 'results'}", "--", "all"], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    commands = shell_commands(result.stdout + result.stderr)
    assert not any("raven_twin" in c for c in commands)
    assert sum(f"--out {tmp_path}/results/smoke/train/raven " in c for c in commands) == 1
    table = next(c for c in commands if c.startswith("raven tables") and "chunk_weighting" in c)
    assert f"--row=twin={tmp_path}/results/smoke/rows/raven.json" in table
