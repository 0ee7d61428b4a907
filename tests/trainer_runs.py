"""Every trainer at smoke scale for 2 iterations (base, ODE init, DMD in each history mode and with a Wan
teacher, CM-GRPO, Flow-GRPO), shared by the 2-rank FSDP2 test and its 1-process reference (also run in its subprocesses).

Both ranks draw the same data as the 1-process run (`SameDataWorld`: the per-rank seed without the rank),
so FSDP2's gradient average over ranks equals the 1-process gradient and the runs must agree exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from raven.training.distributed import World

DMD_MODES = ("raven", "sf", "df", "tf", "df_self_rollout")
RUNS = ("base", "ode_init", *(f"dmd_{mode}" for mode in DMD_MODES), "dmd_wan_teacher", "cmgrpo", "flow_grpo")
# bf16 compute exists only under FSDP2's MixedPrecisionPolicy; a released init is exported by rank 0 alone
SHARDED_RUNS = (*RUNS, "dmd_raven_bf16", "ode_init_released")
PROMPTS = ["red circle left fast on black", "blue square still on white", "green triangle up slow on black"]
CMGRPO = {"iterations": 2, "checkpoint_every": 2, "group_size": 2, "sync_group_size": 1, "lora_rank": 4,
          "lora_alpha": 4}


class SameDataWorld(World):
    """A real world whose ranks all draw the 1-process run's data: seed base + iteration."""

    def seed(self, base: int, iteration: int, rank: int | None = None) -> int:
        return base + iteration


def spec_file(repo_root: Path, folder: Path, name: str, **overrides) -> Path:
    from raven.config import resolve_spec, write_spec

    spec = resolve_spec(repo_root / "config", "smoke",
                        overrides={"tracking_uri": f"sqlite:///{folder}/mlflow.db", **overrides})
    write_spec(spec, folder / f"{name}.yaml")
    return folder / f"{name}.yaml"


def prepare_inputs(repo_root: Path, folder: Path) -> None:
    """Specs of every run, a prompt file, a student folder, ODE pairs of the exact teacher and toy clips."""
    from raven.data.prompts import write_prompt_file
    from raven.models import build_transformer
    from raven.training.ode_init import ode_pairs_stage
    from test_dmd_stage import clip_shards

    folder.mkdir(parents=True, exist_ok=True)
    write_prompt_file(folder / "prompts.txt", PROMPTS)
    two = {"iterations": 2, "checkpoint_every": 2}
    spec_file(repo_root, folder, "base", stages={"base": two})
    ode = spec_file(repo_root, folder, "ode_init", stages={"ode_init": two, "ode_pairs": {"shard_size": 4}})
    for mode in DMD_MODES:
        spec_file(repo_root, folder, f"dmd_{mode}", stages={"dmd": {**two, "ttur": 1, "history_mode": mode}})
    spec_file(repo_root, folder, "dmd_raven_bf16", precision="bf16", stages={"dmd": {**two, "ttur": 1}})
    spec_file(repo_root, folder, "ode_init_released", weights={"causal_init": str(folder / "student")})
    spec_file(repo_root, folder, "dmd_wan_teacher", weights={"teacher": str(folder / "student")},
              stages={"dmd": {**two, "ttur": 1, "teacher": "wan", "teacher_guidance": 3.0}})  # a sharded frozen teacher
    spec_file(repo_root, folder, "cmgrpo", stages={"cmgrpo": CMGRPO})
    spec_file(repo_root, folder, "flow_grpo", stages={"cmgrpo": {**CMGRPO, "kl_beta": 0.004}},
              sampler={"kind": "euler_maruyama", "eta": 0.4})
    from raven.config import read_spec

    spec = read_spec(ode)
    torch.manual_seed(0)
    build_transformer(spec).save_pretrained(folder / "student")
    (folder / "teacher").mkdir()
    (folder / "teacher" / "summary.json").write_text(json.dumps({"kind": "exact"}))
    ode_pairs_stage(ode, folder / "teacher", folder / "prompts.txt", folder / "pairs")
    clip_shards(folder / "clips", {"height": spec.video.height, "width": spec.video.width, "frames": spec.video.frames})


def run_trainer(name: str, folder: Path, out: Path) -> dict:
    from raven.training.base import train_base
    from raven.training.cmgrpo import train_cmgrpo
    from raven.training.dmd import train_dmd
    from raven.training.ode_init import train_ode_init

    spec, prompts, student = folder / f"{name}.yaml", folder / "prompts.txt", folder / "student"
    if name == "base":
        return train_base(spec, prompts=prompts, out=out)
    if name.startswith("ode_init"):
        return train_ode_init(spec, folder / "pairs", student, out)
    if name.startswith("dmd_"):
        clips = folder / "clips" if name in ("dmd_tf", "dmd_df") else None
        return train_dmd(spec, student, prompts, out, clips=clips, critic_init=student)
    return train_cmgrpo(spec, student, prompts, out)


def agreed_port(path: Path) -> str:
    """The run's MASTER_PORT: rank 0 takes a free port just before the run and leaves it in `path` for rank 1.
    (Ports reserved when the test started could be taken minutes later, by gloo's own connections among
    others, and a rank that cannot bind its store leaves the other waiting.)"""
    from local_services import free_port

    from raven.io import atomic_write_text

    if os.environ["RANK"] == "0":
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, str(free_port()))
    deadline = time.monotonic() + 300
    while not path.is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 wrote no port to {path} within 300 s")
        time.sleep(0.1)
    return path.read_text()


def worker(folder: str, out: str) -> None:
    """Entry of one gloo rank: every run in turn, each in its own process group (port)."""
    import raven.training.distributed as distributed

    torch.set_num_threads(1)
    real_init_world = distributed.init_world

    def init_world(precision: str = "fp32") -> World:
        world = real_init_world(precision)
        return SameDataWorld(**{field.name: getattr(world, field.name) for field in dataclasses.fields(World)})

    distributed.init_world = init_world
    for name in SHARDED_RUNS:
        os.environ["MASTER_PORT"] = agreed_port(Path(out) / "ports" / name)
        run_trainer(name, Path(folder), Path(out) / name)
