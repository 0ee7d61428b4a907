"""The world's device and precision rules (issue 14): one GPU per task under `raven launch`."""

import pytest
import torch

from raven.training.distributed import World, cuda_device, init_world


def test_a_task_that_sees_one_gpu_uses_cuda_0_whatever_its_local_rank():
    # raven launch narrows CUDA_VISIBLE_DEVICES to one GPU per task: local ranks 1..7 see a single cuda:0
    assert [cuda_device(rank, visible=1) for rank in range(8)] == [torch.device("cuda", 0)] * 8


def test_a_task_that_sees_the_node_uses_its_local_rank():
    # torchrun: every task sees the node's 8 GPUs
    assert cuda_device(5, visible=8) == torch.device("cuda", 5)
    with pytest.raises(RuntimeError, match="LOCAL_RANK=3 but this task sees 2 GPUs"):
        cuda_device(3, visible=2)


def test_precision_names_the_spec_key_and_sets_the_compute_dtype(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_world("bf16").dtype == torch.bfloat16 and World().dtype == torch.float32
    with pytest.raises(ValueError, match="key `precision` of the run spec"):
        init_world("fp16")
