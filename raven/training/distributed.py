"""The distributed context of a training job: one process per device, torchrun-compatible environment.

`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT` (set by torchrun or `raven launch`) decide
the world. Several ranks, on any device (NCCL on CUDA, gloo on the CPU): FSDP2 (`fully_shard` on every
transformer block, then the root) with gradient checkpointing on trainable models, a `MixedPrecisionPolicy`
(parameters in the spec's `precision`, gradients reduced in fp32), and the model's extra forward methods
(`fsdp_forward_methods`, e.g. the causal forward) registered so the root's parameters are unsharded for
them too; FSDP2 averages gradients itself. The CPU tests run exactly these lines on 2 gloo processes.
"""

from __future__ import annotations

import os
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
    precision: str = "fp32"  # compute dtype of sharded models (spec.precision): fp32 or bf16

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Models are FSDP2-sharded (several ranks, on any device)."""
        return self.world_size > 1

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

    def seed(self, base: int, iteration: int, rank: int | None = None) -> int:
        """Per-iteration, per-rank seed: base + iter·world_size + rank (docs/method.md §4); `rank` defaults to this one's."""
        return base + iteration * self.world_size + (self.rank if rank is None else rank)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of `tensor` (a new tensor; the input is left alone)."""
        total = tensor.detach().clone()
        if self.world_size > 1:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.all_reduce_sum(tensor) / self.world_size

    def gather(self, value: object) -> list:
        """Every rank's `value` (any picklable object), in rank order."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """A frozen model (teacher, codec, text encoder, sampled student) on this rank's device, in eval mode,
        its parameters in the compute precision; buffers (RoPE tables) keep theirs, as under FSDP2's policy."""
        module.to(self.device)
        for param in module.parameters():
            if param.is_floating_point():
                param.data = param.data.to(self.dtype)
        return module.eval().requires_grad_(False)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def prepare(self, module: torch.nn.Module, trainable: bool = True) -> torch.nn.Module:
        """Move a model to this rank's device; with several ranks, start every rank from rank 0's weights and
        shard per block, then the root (FSDP2, computing in `precision`, reducing gradients in fp32).

        Sharded trainable models also get gradient checkpointing (diffusers' `enable_gradient_checkpointing`).
        """
        module = module.to(self.device)
        if self.sharded:
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)
            if trainable and hasattr(module, "enable_gradient_checkpointing"):
                module.enable_gradient_checkpointing()
            policy = MixedPrecisionPolicy(param_dtype=None if self.precision == "fp32" else self.dtype,
                                          reduce_dtype=torch.float32)
            for block in getattr(module, "blocks", []):
                fully_shard(block, mp_policy=policy)
            fully_shard(module, mp_policy=policy)
            for name in getattr(module, "fsdp_forward_methods", ()):
                register_fsdp_forward_method(module, name)
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


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def launched_rank() -> int:
    """This process's rank from the launcher's environment (0 when not launched), before any process group."""
    return int(os.environ.get("RANK", "0"))


def cuda_device(local_rank: int, visible: int) -> torch.device:
    """The GPU of one task: cuda:0 when it sees one GPU (`raven launch` narrows CUDA_VISIBLE_DEVICES to one
    GPU per task), else cuda:LOCAL_RANK (torchrun: every task sees the node's GPUs)."""
    if visible == 1:
        return torch.device("cuda", 0)
    if not 0 <= local_rank < visible:
        raise RuntimeError(f"LOCAL_RANK={local_rank} but this task sees {visible} GPUs (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): launch one task per GPU with "
                           "`raven launch`, or torchrun with --nproc-per-node at most the GPU count")
    return torch.device("cuda", local_rank)


def init_world(precision: str = "fp32") -> World:
    """The world from the torchrun environment; initialises the process group when WORLD_SIZE > 1.
    `precision` (spec.precision) is the compute dtype of sharded models."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {sorted(PRECISIONS)} (key `precision` of the run spec)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    cuda = torch.cuda.is_available()
    device = cuda_device(local_rank, torch.cuda.device_count()) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world_size} but {name} is not set: launch with torchrun or `raven launch`")
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world_size)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=device, precision=precision)


def close_world(world: World) -> None:
    if world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
