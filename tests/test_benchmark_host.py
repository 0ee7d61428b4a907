"""The `machine` key of every benchmark report names the CPU, so two reports from different machines can be told
apart (platform.processor() is empty on Linux)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import host  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu avx2\n\n"
                       "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n")
    assert host.cpu_model(cpuinfo) == "AMD EPYC 7B13 64-Core Processor"


def test_without_cpuinfo_the_model_is_platforms(tmp_path):
    assert host.cpu_model(tmp_path / "absent") == platform.processor()


def test_machine_records_the_vector_instructions_torch_uses():
    import torch

    record = host.machine(note="x")
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["note"] == "x" and record["cpu_count"] >= 1
