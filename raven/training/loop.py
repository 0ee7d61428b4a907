"""The one training loop shared by every trainer (base, causal teacher, ODE init, DMD, CM-GRPO).

A trainer is a list of `TrainedModel`s (each with its own AdamW and optional EMA) and a `step(ctx)`
that computes losses and calls `ctx.optimisers.update(name, loss)` for each model it trains in that
iteration (TTUR lives in the step: DMD updates the critic every iteration and the student every
`ttur`-th). The loop owns everything around it: per-rank seeds (docs/method.md §4), NaN/Inf-gradient skipping,
checkpoints with resume, MLflow logging, progress bar, final export and the JSON summary.

A run is defined by its spec, seed and iteration count, never by time: its weights are the same on any
machine and under any load. `budget_s` is only a guard (`StageLength`): when this process has trained that
long before the count is reached, the loop checkpoints and, by default (`on_budget: fail`), exports no
model, writes `<out>/stopped.json` instead of `summary.json` and raises `BudgetExceeded` (exit status 3);
rerunning resumes from the checkpoint, so a slow machine finishes the same run in several tries.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import Field
from tqdm import tqdm

from raven.config import Section
from raven.config.spec import OptimSpec
from raven.io import atomic_write_json, keep_umask
from raven.runtime import BudgetExceeded
from raven.training.checkpoint import (
    checkpoint_iteration,
    claim_checkpoints,
    identity_defaults,
    latest_intact_checkpoint,
    load_part,
    publish,
    rng_state,
    run_identity,
    save_part,
    set_rng_state,
    staging_folder,
)
from raven.training.distributed import World
from raven.training.ema import EMA

LOG_FLUSH_EVERY = 25  # MLflow writes are batched; every step is still logged


@dataclass
class TrainedModel:
    """A model the loop optimises. `export`: folder under <out> for the final `save_pretrained`
    (its EMA goes to `<export>_ema`); None for models that are not exported (e.g. the critic)."""

    name: str
    module: torch.nn.Module
    optim: OptimSpec
    ema_decay: float | None = None
    export: str | None = None


STOPPED = "stopped.json"  # what a run stopped short by its guard writes instead of summary.json


@dataclass(frozen=True)
class LoopOptions:
    iterations: int
    checkpoint_every: int
    seed: int = 0
    keep_checkpoints: int = 2
    budget_s: float | None = None  # guard on this process's training seconds (StageLength)
    on_budget: Literal["fail", "keep"] = "fail"


class StageLength(Section):
    """How long a training stage runs; every trainer's options (`stages.<stage>`) extend it.

    `iterations` defines the result; `budget_s` only guards against a run that would take far longer
    than expected. What the guard does (`on_budget`): `fail` (default) checkpoints, exports no model,
    writes `stopped.json` and exits with status 3, so no table can use a short model and rerunning
    resumes; `keep` exports the short model, marked `stopped_by_budget` in its summary, in every row
    built on it and in the tables (for time-boxed benchmarks)."""

    iterations: int = Field(gt=0, description="training iterations: what defines the run (with the seed)")
    checkpoint_every: int = Field(default=500, gt=0)
    budget_s: float | None = Field(default=None, gt=0, description="guard: training seconds of one process "
                                   "before the run stops short (on_budget); not part of the result")
    on_budget: Literal["fail", "keep"] = Field(default="fail", description="when the guard fires: fail "
                                               "(checkpoint, no model, exit 3; rerun to resume) or keep "
                                               "(export the short model, marked stopped_by_budget)")

    def loop_options(self, seed: int) -> LoopOptions:
        return LoopOptions(self.iterations, self.checkpoint_every, seed, budget_s=self.budget_s,
                           on_budget=self.on_budget)


class Optimisers:
    """AdamW (own lr/betas/eps/weight decay) and EMA per model; skips steps whose grad norm is NaN/Inf."""

    def __init__(self, models: Sequence[TrainedModel], world: World):
        self.world = world
        self.models = {m.name: m for m in models}
        for model in models:
            world.prepare(model.module)
        self.params = {m.name: [p for p in m.module.parameters() if p.requires_grad] for m in models}
        self.optimizers = {
            m.name: torch.optim.AdamW(self.params[m.name], lr=m.optim.lr, betas=m.optim.betas, eps=m.optim.eps,
                                      weight_decay=m.optim.weight_decay)
            for m in models
        }
        self.emas = {m.name: EMA(m.module, m.ema_decay) for m in models if m.ema_decay is not None}
        self.skipped = {m.name: 0 for m in models}

    def update(self, name: str, loss: torch.Tensor) -> dict[str, float]:
        """Backward of `loss`, then one optimiser step of model `name` (see `step`); returns its metrics."""
        return self.accumulate(name, [loss], 1)

    def accumulate(self, name: str, losses: Iterable[torch.Tensor], count: int) -> dict[str, float]:
        """Backward of each of `count` micro-batch losses over `count`, one at a time (only one micro-batch's
        graph is alive; the gradients add up to those of the losses' mean), then one optimiser step of `name`."""
        parts = []
        for loss in losses:
            (loss / count).backward()
            parts.append(loss.detach().float())
        if len(parts) != count:
            raise ValueError(f"{len(parts)} micro-batch losses for {name!r}, expected {count}")
        mean = torch.stack(parts).mean()
        return {f"loss/{name}": float(self.world.all_reduce_mean(mean)), **self.step(name)}

    def step(self, name: str) -> dict[str, float]:
        """Clip, step unless the norm is NaN/Inf (then skip and count), EMA. Several ranks: FSDP2 has averaged
        the gradients in backward."""
        model, params = self.models[name], self.params[name]
        norm = torch.nn.utils.clip_grad_norm_(params, model.optim.grad_clip)
        finite = bool(torch.isfinite(norm))
        if finite:
            self.optimizers[name].step()
            if name in self.emas:
                self.emas[name].update(model.module)
        else:
            self.skipped[name] += 1
        self.optimizers[name].zero_grad(set_to_none=True)
        return {f"grad_norm/{name}": float(norm), f"skipped/{name}": float(not finite)}

    def parts(self) -> dict[str, Any]:
        """Checkpoint parts (collectives under FSDP2: every rank calls this)."""
        parts: dict[str, Any] = {}
        for name, model in self.models.items():
            parts[f"model-{name}"] = self.world.full_state_dict(model.module)
            parts[f"optim-{name}"] = self.world.optimizer_state(model.module, self.optimizers[name])
            if name in self.emas:
                parts[f"ema-{name}"] = self.emas[name].state_dict()
        return parts

    def load(self, folder: Path) -> None:
        for name, model in self.models.items():
            self.world.load_full_state_dict(model.module, load_part(folder, f"model-{name}"))
            self.world.load_optimizer_state(model.module, self.optimizers[name], load_part(folder, f"optim-{name}"))
            if name in self.emas:
                self.emas[name].load_state_dict(load_part(folder, f"ema-{name}"))


@dataclass
class StepContext:
    """What a trainer's step gets each iteration. `generator` is seeded base + iter·world_size + rank."""

    iteration: int
    generator: torch.Generator
    world: World
    optimisers: Optimisers


class Step(Protocol):
    """One training iteration: compute losses, call `ctx.optimisers.update(...)`, return metrics to log.

    A step holding state beyond the per-iteration generator (a data cursor) also defines
    `state_dict()` / `load_state_dict(state)`; it is checkpointed with the models.
    """

    def __call__(self, ctx: StepContext) -> Mapping[str, float]: ...


@dataclass
class MetricLog:
    """Buffers every step's metrics and writes them to the MLflow run in batches (rank 0 only)."""

    run: Any
    pending: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def add(self, iteration: int, metrics: dict[str, float]) -> None:
        self.pending.append((iteration, metrics))
        if len(self.pending) >= LOG_FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.run is None or not self.pending:
            self.pending.clear()
            return
        from raven.tracking.runs import log_batch, metric_entities
        from raven.tracking.store import locked_call

        entities = [e for iteration, metrics in self.pending for e in metric_entities(metrics, iteration)]
        locked_call(self.run.tracking_uri, lambda client: log_batch(client, self.run.run_id, metrics=entities))
        self.pending.clear()


def save_checkpoint(root: Path, iteration: int, optimisers: Optimisers, step: Step, keep: int, elapsed_s: float) -> None:
    """Every rank writes its RNG state into the staging folder; rank 0 writes the rest, `done`, renames."""
    world = optimisers.world
    staging = staging_folder(root, iteration)
    if world.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    world.barrier()
    parts = optimisers.parts()
    save_part(staging, f"rng-rank{world.rank}", rng_state())
    if world.is_main:
        loop_state = {"iteration": iteration, "skipped": dict(optimisers.skipped), "elapsed_s": elapsed_s,
                      "step": step.state_dict() if hasattr(step, "state_dict") else None}
        for name, state in {**parts, "loop": loop_state}.items():
            save_part(staging, name, state)
    world.barrier()
    if world.is_main:
        publish(root, iteration, keep)
    world.barrier()


def resume(root: Path, optimisers: Optimisers, step: Step) -> tuple[int, float]:
    """Load the newest complete checkpoint, if any; returns the iteration to start from and the training
    time spent before it. Unreadable newer checkpoints are set aside, each named in a warning."""
    folder = latest_intact_checkpoint(root, optimisers.world)
    if folder is None:
        return 0, 0.0
    optimisers.load(folder)
    loop_state = load_part(folder, "loop")
    optimisers.skipped.update(loop_state["skipped"])
    if loop_state["step"] is not None:
        step.load_state_dict(loop_state["step"])
    set_rng_state(load_part(folder, f"rng-rank{optimisers.world.rank}"))
    return checkpoint_iteration(folder), float(loop_state["elapsed_s"])


def export_pretrained(module: torch.nn.Module, state: Mapping[str, torch.Tensor], folder: Path) -> None:
    """`save_pretrained` of a fresh unsharded copy carrying `state`, written beside `folder` then renamed in."""
    plain = next(c for c in type(module).__mro__ if not c.__name__.startswith("FSDP"))
    fresh = plain.from_config(module.config)
    fresh.load_state_dict(dict(state), strict=True)
    staging = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    fresh.save_pretrained(staging, safe_serialization=True)
    keep_umask(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def export_models(out: Path, optimisers: Optimisers) -> dict[str, str]:
    """Final weights of every exported model under <out>/<export> and its EMA under <out>/<export>_ema."""
    folders = {}
    for name, model in optimisers.models.items():
        if model.export is None:
            continue
        state = optimisers.world.full_state_dict(model.module)
        ema = optimisers.emas[name].state_dict() if name in optimisers.emas else None
        if optimisers.world.is_main:
            export_pretrained(model.module, state, out / model.export)
            folders[name] = model.export
            if ema is not None:
                export_pretrained(model.module, {**state, **ema}, out / f"{model.export}_ema")
                folders[f"{name}_ema"] = f"{model.export}_ema"
    return folders


def out_of_budget(session_s: float, options: LoopOptions, world: World) -> bool:
    """Whether this process has trained for the guard's `budget_s`, agreed by all ranks (the slowest
    rank decides). Per process, not per run, so that rerunning a stopped run makes progress."""
    over = options.budget_s is not None and session_s >= options.budget_s
    return bool(world.all_reduce_sum(torch.tensor(float(over))) > 0)


def guard_message(stage: str, out: Path, done: int, options: LoopOptions, session_s: float) -> str:
    return (f"{stage} in {out} stopped by its time guard (stages.{stage}.budget_s = {options.budget_s:g} s; this "
            f"process trained {session_s:.0f} s) after {done} of {options.iterations} iterations. Its checkpoint "
            f"{out / 'checkpoints'} holds iteration {done}; no model was exported and {out / STOPPED} records the "
            f"stop. To finish the same run, rerun the same command or Snakemake target: it resumes from the "
            f"checkpoint (each try trains up to budget_s seconds), or raise or remove budget_s (the checkpoints "
            f"are kept: budget_s only paces a run).")


def train(
    models: Sequence[TrainedModel],
    step: Step,
    out: str | Path,
    options: LoopOptions,
    world: World | None = None,
    spec: Any = None,
    stage: str = "train",
    summary_extra: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str | Path | None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a training job; writes checkpoints, exported models and `<out>/summary.json` last.

    `spec` (a RunSpec) enables MLflow logging of every step under the run of (`stage`, `out`), and with
    `inputs` (the files the run starts from, by name) it decides whether checkpoints under `out` may be
    resumed: those of a run with another spec or other inputs are set aside (`claim_checkpoints`).
    """
    out, world = Path(out), world or World()
    checkpoints = out / "checkpoints"
    if spec is not None and world.is_main:
        claim_checkpoints(checkpoints, run_identity(spec, stage, inputs or {}), identity_defaults(spec))
    world.barrier()
    optimisers = Optimisers(models, world)
    start, elapsed = resume(checkpoints, optimisers, step)
    started, step_times, metrics, stop = time.perf_counter(), [], {}, False
    tracking = nullcontext(None)
    if spec is not None and world.is_main:
        from raven.tracking import training_run

        tracking = training_run(spec, stage, out)
    iterations_done = start
    with tracking as run:
        log = MetricLog(run)
        progress = tqdm(range(start, options.iterations), initial=start, total=options.iterations,
                        desc=stage, disable=not world.is_main, dynamic_ncols=True)
        for iteration in progress:
            if stop:
                break
            generator = torch.Generator().manual_seed(world.seed(options.seed, iteration))
            step_start = time.perf_counter()
            metrics = dict(step(StepContext(iteration, generator, world, optimisers)))
            step_times.append(time.perf_counter() - step_start)
            elapsed += step_times[-1]
            metrics["time/step_s"] = step_times[-1]
            metrics.update({f"skipped_total/{name}": float(n) for name, n in optimisers.skipped.items()})
            log.add(iteration, metrics)
            progress.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k.startswith("loss/")}, refresh=False)
            done, stop = iteration + 1, out_of_budget(sum(step_times), options, world)
            if done % options.checkpoint_every == 0 or done == options.iterations or stop:
                save_checkpoint(checkpoints, done, optimisers, step, options.keep_checkpoints, elapsed)
            iterations_done = done
        log.flush()
        short = iterations_done < options.iterations
        kept = not short or options.on_budget == "keep"
        folders = export_models(out, optimisers) if kept else {}
    summary = {
        "stage": stage,
        "iterations": iterations_done,
        "iterations_target": options.iterations,
        "stopped_by_budget": short,
        "budget_s": options.budget_s,
        "on_budget": options.on_budget,
        "seed": options.seed,
        "threads": torch.get_num_threads(),
        "train_s": elapsed,
        "resumed_from": start,
        "world_size": world.world_size,
        "skipped_steps": dict(optimisers.skipped),
        "last_metrics": metrics,
        "mean_step_s": sum(step_times) / len(step_times) if step_times else None,
        "wall_s": time.perf_counter() - started,
        "models": folders,
        **dict(summary_extra or {}),
    }
    finish(out, summary, None if kept else guard_message(stage, out, iterations_done, options, sum(step_times)), world)
    return summary


def finish(out: Path, summary: Mapping[str, Any], stopped: str | None, world: World) -> None:
    """Write `summary.json` last (the stage's target). A run its guard stopped (`stopped`: the message)
    writes `stopped.json` instead, removes a stale `summary.json` and raises BudgetExceeded on every rank."""
    if world.is_main:
        if stopped is None:
            (out / STOPPED).unlink(missing_ok=True)
            atomic_write_json(out / "summary.json", summary)
        else:
            (out / "summary.json").unlink(missing_ok=True)
            atomic_write_json(out / STOPPED, {**summary, "message": stopped})
    world.barrier()
    if stopped is not None:
        raise BudgetExceeded(stopped)

