"""benchmarks/gpu_check.py at tiny dims on the CPU: the same lines the GPU check runs (streaming through
`generate`, one DMD iteration through DMDStep with gradient checkpointing), its report and estimates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_at_tiny_dims_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dims", "tiny", "--device", "cpu",
                             "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ran"] and report["device"] == "cpu" and report["dims"] == "tiny"
    streaming, dmd = report["streaming"], report["dmd_iteration"]
    assert streaming["fps"] > 0 and 0 < streaming["time_to_first_chunk_s"] < streaming["generation_s"]
    assert streaming["pixel_frames"] == streaming["latent_frames"]  # the toy codec keeps the frame count
    assert dmd["step_s"] > 0 and dmd["estimate"]["breakdown_gb"].keys() >= {"weights", "grads", "optimizer", "ema"}
    assert streaming["measured"] == {"allocated_gb": None, "reserved_gb": None}  # peaks are measured on CUDA only


def test_committed_gpu_report_says_whether_it_ran():
    report = json.loads((REPO / "benchmarks/reports/gpu.json").read_text())
    if report["ran"]:
        assert report["device"].startswith("cuda") and {"streaming", "dmd_iteration"} <= set(report)
    else:
        assert "gpu_check.py" in report["reason"]
