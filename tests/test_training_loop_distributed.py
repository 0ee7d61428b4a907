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



def two_ranks(out: Path) -> list[str]:
    """`loop_fixtures.worker` (4 iterations, global batch 3) on 2 gloo ranks; their outputs."""
    port = str(free_port())
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); from loop_fixtures import worker; worker(sys.argv[1], 3)"
    processes = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", code, str(out)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    return outputs


def test_two_gloo_ranks_equal_one_process(tmp_path):
    run(tmp_path / "single", 4, FlowStep(global_batch=3))
    two_ranks(tmp_path / "double")
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


def test_two_ranks_resume_past_a_truncated_checkpoint(tmp_path):
    """Every rank finds the newest checkpoint unreadable, rank 0 sets it aside, all resume from the older one
    and end with the weights of the uninterrupted run."""
    two_ranks(tmp_path / "whole")
    root = tmp_path / "whole" / "checkpoints"
    intact = load_file(str(tmp_path / "whole" / "model" / "diffusion_pytorch_model.safetensors"))
    bad = root / "iter-00000004" / "model-student.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    (tmp_path / "whole" / "summary.json").unlink()  # as if killed after the checkpoint, before the export
    outputs = two_ranks(tmp_path / "whole")
    assert str(bad) in outputs[0]  # rank 0's warning names the file
    assert (root / "corrupt-iter-00000004" / "model-student.safetensors").is_file()
    resumed = load_file(str(tmp_path / "whole" / "model" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(intact[name], resumed[name]) for name in intact)
