"""Every trainer (base, ODE init, DMD in each history mode, CM-GRPO, Flow-GRPO) runs 2 iterations under
FSDP2 on 2 gloo processes with gradient checkpointing on, through the lines CUDA runs (sharded blocks and
root, the causal forward registered on the root, checkpointed recomputation in the attention context,
full state dicts gathered for checkpoints, outputs written by rank 0); its losses and updated weights equal
a 1-process run without checkpointing (issue 14). Both ranks draw the 1-process run's data
(`trainer_runs.SameDataWorld`), so the mean gradient over ranks is the 1-process gradient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from trainer_runs import RUNS, prepare_inputs, run_trainer

from raven.training.checkpoint import load_part

TESTS = Path(__file__).resolve().parent
LAST = "checkpoints/iter-00000002"


def parts_of(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The trained weights of the last checkpoint: every model and its EMA."""
    return {path.stem: load_part(folder, path.stem) for path in sorted(folder.glob("*.safetensors"))
            if path.stem.startswith(("model-", "ema-"))}


def test_every_trainer_on_two_fsdp2_ranks_with_checkpointing_equals_one_process(repo_root, tmp_path):
    prepare_inputs(repo_root, tmp_path / "in")
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); from trainer_runs import worker; worker(*sys.argv[1:])"
    processes = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "in"), str(tmp_path / "double")],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    single = {name: run_trainer(name, tmp_path / "in", tmp_path / "single" / name) for name in RUNS}
    outputs = []
    for process in processes:  # a rank that hangs is killed, so that its output names what went wrong
        try:
            outputs.append(process.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            process.kill()
            outputs.append(process.communicate()[0] + "\n(killed: no exit within 300 s)")
    assert all(p.returncode == 0 for p in processes), outputs[0][-5000:] + outputs[1][-5000:]
    for name in RUNS:
        one, two = tmp_path / "single" / name, tmp_path / "double" / name
        double = json.loads((two / "summary.json").read_text())
        assert double["world_size"] == 2 and double["iterations"] == 2, name
        losses = {key: value for key, value in single[name]["last_metrics"].items() if key.startswith("loss/")}
        assert losses and all(value > 0 for key, value in single[name]["last_metrics"].items()
                              if key.startswith("grad_norm/")), name
        for key, value in losses.items():
            assert abs(double["last_metrics"][key] - value) <= 1e-5 * max(1.0, abs(value)), (name, key)
        reference, sharded = parts_of(one / LAST), parts_of(two / LAST)
        assert reference.keys() == sharded.keys() and any(k.startswith("model-") for k in reference), name
        for part, tensors in reference.items():
            assert tensors.keys() == sharded[part].keys(), (name, part)
            for tensor_name, tensor in tensors.items():
                difference = float((tensor - sharded[part][tensor_name]).abs().max())
                assert difference <= 1e-5, (name, part, tensor_name, difference)
    # precision bf16: the same DMD run computes in bf16 under FSDP2 (fp32 master weights, fp32 reduce)
    fp32 = json.loads((tmp_path / "double" / "dmd_raven" / "summary.json").read_text())["last_metrics"]
    bf16 = json.loads((tmp_path / "double" / "dmd_raven_bf16" / "summary.json").read_text())["last_metrics"]
    for key in ("loss/critic", "loss/student"):
        assert bf16[key] != fp32[key] and abs(bf16[key] - fp32[key]) <= 0.05 * abs(fp32[key]), (key, bf16, fp32)
    weights = parts_of(tmp_path / "double" / "dmd_raven_bf16" / LAST)["model-student"]
    assert all(tensor.dtype == torch.float32 for tensor in weights.values())
    # a released ODE init is exported once, by rank 0, while rank 1 waits
    released = tmp_path / "double" / "ode_init_released"
    assert json.loads((released / "summary.json").read_text())["trained"] is False
    student = load_file(str(tmp_path / "in" / "student" / "diffusion_pytorch_model.safetensors"))
    for folder in ("model", "model_ema"):
        exported = load_file(str(released / folder / "diffusion_pytorch_model.safetensors"))
        assert exported.keys() == student.keys() and all(torch.equal(exported[k], student[k]) for k in student)
