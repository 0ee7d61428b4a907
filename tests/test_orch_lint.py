"""`snakemake --lint`: what stays is justified in a comment beside it (helpers kept beside their rules;
globals in shell commands that must not become rerun-triggering params); every rule names its software."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
JUSTIFIED = re.compile(r"Mixed rules and functions in same snakefile\.|Shell command directly uses variable "
                       r"(SCALE|SPEC_SETTINGS|LAUNCH|BASE_MODEL) from outside of the rule")


def test_lint_findings_are_only_the_justified_ones(tmp_path):
    result = subprocess.run(["snakemake", "--lint", "--config", f"results_dir={tmp_path}"], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    findings, where = [], ""
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("Lints for"):
            where = line
        elif line.startswith("    * "):
            findings.append((where, line.strip("* ").rstrip(":")))
    assert findings, "no lint output: did snakemake --lint run?"
    assert [f for f in findings if not JUSTIFIED.search(f[1])] == []
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert "snakemake --lint flags shell commands that use SCALE, SPEC_SETTINGS, LAUNCH and BASE_MODEL" in common
    for name in {re.search(r"(\w+\.smk)", w).group(1) for w, f in findings if f.startswith("Mixed")}:
        assert "snakemake --lint 'Mixed rules and functions'" in (REPO / "workflow/rules" / name).read_text(), name
