"""environment.yml (clusters) lists exactly the dependencies of pyproject.toml (+ the test extra)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    (pip,) = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    assert {line for line in pip if not line.startswith("-")} == wanted
    assert "python=3.11" in environment["dependencies"]
    assert any(line.startswith("-e .[rewards]") for line in pip)  # the cluster env carries the rewards extra
