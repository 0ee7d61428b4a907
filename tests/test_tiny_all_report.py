"""benchmarks/tiny_all.py: where a finished run's time went, per rule, from each job's Snakemake benchmark
file (found through the rule the log names above it)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import tiny_all  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def benchmark_file(path: Path, seconds: float, cpu: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HEADER}\n{seconds}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    return path


def test_log_gives_seconds_per_rule(tmp_path):
    a = benchmark_file(tmp_path / "b" / "train" / "raven.tsv", 100.5, 90.0)
    b = benchmark_file(tmp_path / "b" / "train" / "raven@s1.tsv", 99.5, 91.0)
    c = benchmark_file(tmp_path / "b" / "spec" / "raven.tsv", 0.4, 0.3)
    log = tmp_path / "2026-12-01T100000.000000.snakemake.log"
    log.write_text("\n".join([
        "[Tue Dec  1 10:00:05 2026]", "rule train_dmd:", "    output: x", f"    benchmark: {a}", "",
        "[Tue Dec  1 10:00:06 2026]", "rule train_dmd:", f"    benchmark: {b}", "",
        "[Tue Dec  1 10:00:07 2026]", "localrule row_spec:", f"    benchmark: {c}", "",
        "3 of 3 steps (100%) done", ""]))
    rules = tiny_all.rule_seconds(log)
    assert rules == {"train_dmd": {"jobs": 2, "s": 200.0, "cpu_s": 181.0},
                     "row_spec": {"jobs": 1, "s": 0.4, "cpu_s": 0.3}}
    assert list(rules) == ["train_dmd", "row_spec"]  # largest first
