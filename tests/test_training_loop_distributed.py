"""2 gloo processes on CPU give the same parameters as 1 process with the same global batch (docs/method.md §5
loss reduction with an all-reduced denominator; ranks hold unequal batches: 2 + 1 samples)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from local_services import free_port
from loop_fixtures import FlowStep, run
from safetensors.torch import load_file

TESTS = Path(__file__).resolve().parent



def test_two_gloo_ranks_equal_one_process(tmp_path):
    run(tmp_path / "single", 4, FlowStep(global_batch=3))
    port = str(free_port())
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); from loop_fixtures import worker; worker(sys.argv[1], 3)"
    processes = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "double")], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    for folder in ("model", "model_ema"):
        single = load_file(str(tmp_path / "single" / folder / "diffusion_pytorch_model.safetensors"))
        double = load_file(str(tmp_path / "double" / folder / "diffusion_pytorch_model.safetensors"))
        for name in single:
            assert torch.allclose(single[name], double[name], atol=1e-5, rtol=0), name
    # the critic (not exported) too, from the last checkpoint
    from raven.training.checkpoint import load_part

    last = "checkpoints/iter-00000004"
    single, double = load_part(tmp_path / "single" / last, "model-critic"), load_part(tmp_path / "double" / last, "model-critic")
    assert max(float((single[n] - double[n]).abs().max()) for n in single) <= 1e-5
    assert (tmp_path / "double" / last / "rng-rank1.safetensors").is_file()
