"""The documented layout: data/ and results/ exist in a clone with a README each, results/ content is
ignored by git, and every rule logs and times itself under results/<scale>/ as the README says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def test_data_and_results_are_in_a_clone_with_a_readme():
    tracked = subprocess.run(["git", "ls-files", "data/README.md", "results/README.md"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert tracked == ["data/README.md", "results/README.md"]
    assert ignored("results/tiny/train/raven/model/config.json") and ignored("results/mlflow.db")
    assert not ignored("results/README.md") and not ignored("data/weights/tiny/README.md")


def test_every_rule_logs_and_times_itself_under_the_scales_results():
    blocks = []
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.MULTILINE)
        blocks += list(zip(parts[1::2], parts[2::2]))
    assert len(blocks) > 25
    for name, body in blocks:
        assert re.search(r'log: (results\("|RESULTS \+ "/)logs/', body), name
        assert re.search(r'benchmark: (results\("|RESULTS \+ "/)benchmarks/', body), name
    readme = (REPO / "README.md").read_text()
    assert "`results/<scale>/logs/`" in readme and "`results/<scale>/benchmarks/`" in readme
