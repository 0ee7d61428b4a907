"""Telling machines apart: the `machine` key of every benchmark report names the CPU (platform.processor() is
empty on Linux) and its vector level, and benchmarks/cross_machine.py compares weights tensor by tensor."""

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


def test_cross_machine_compare_counts_identical_tensors_and_the_largest_difference(tmp_path):
    import cross_machine
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0]), "e": torch.zeros(0)}, tmp_path / "x.safetensors")
    save_file({"a": torch.tensor([1.0, 2.5]), "b": torch.tensor([3.0]), "e": torch.zeros(0)}, tmp_path / "y.safetensors")
    assert cross_machine.compare(tmp_path / "x.safetensors", tmp_path / "y.safetensors") == {
        "tensors": 3, "identical": 2, "max_abs_diff": 0.5}
