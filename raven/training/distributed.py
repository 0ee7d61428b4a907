"""The distributed context of a training job: one process per device, torchrun-compatible environment.

`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (set by torchrun or `raven launch`) decide
the world. CPU: gloo, replicated models, gradients averaged by an all-reduce after backward. CUDA: NCCL,
FSDP2 (`fully_shard` on every transformer block, then the root) with gradient checkpointing; FSDP2
averages gradients itself. The CUDA path cannot be exercised on the CPU machines the tests run on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    """Rank, world size and device of this process, and the collectives the loop needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Models are FSDP2-sharded (CUDA with several ranks)."""
        return self.world_size > 1 and self.device.type == "cuda"

    def seed(self, base: int, iteration: int) -> int:
        """Per-iteration, per-rank seed: base + iter·world_size + rank (SPEC §4)."""
        return base + iteration * self.world_size + self.rank

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of `tensor` (a new tensor; the input is left alone)."""
        total = tensor.detach().clone()
        if self.world_size > 1:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.all_reduce_sum(tensor) / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over ranks (replicated models; FSDP2 does this itself)."""
        if self.world_size == 1 or self.sharded:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def prepare(self, module: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        """Move a model to this rank's device; replicate (CPU) or shard per block (CUDA, FSDP2).

        Trainable models on CUDA also get gradient checkpointing (diffusers' `enable_gradient_checkpointing`).
        """
        module = module.to(self.device)
        if self.world_size > 1 and not self.sharded:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)
        if self.sharded:
            from torch.distributed.fsdp import fully_shard

            if trainable and hasattr(module, "enable_gradient_checkpointing"):
                module.enable_gradient_checkpointing()
            for block in getattr(module, "blocks", []):
                fully_shard(block)
            fully_shard(module)
        return module

    def full_state_dict(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Unsharded CPU copy of a model's weights (collective under FSDP2: call it on every rank)."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(module, options=options)
        return {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}

    def load_full_state_dict(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))
            return
        module.load_state_dict(state, strict=True)

    def optimizer_state(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_optimizer_state_dict(module, optimizer, options=options)
        return optimizer.state_dict()

    def load_optimizer_state(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))
            return
        optimizer.load_state_dict(state)


def init_world() -> World:
    """The world from the torchrun environment; initialises the process group when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world_size} but {name} is not set: launch with torchrun or `raven launch`")
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world_size)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def close_world(world: World) -> None:
    if world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
