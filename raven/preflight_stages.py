"""Each stage of the DAG at its configured dims and launcher, through the memory model of
`raven.preflight_memory`; the report `raven preflight` prints and writes (benchmarks/reports/preflight.json).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from raven.config import RunSpec, stage_options
from raven.config.spec import INIT_MODES
from raven.preflight import HISTORY_MODES, JUDGE_WORKSPACE_GB, QWEN_32B_PARAMS, REWARD_MODELS_GB, UMT5_XXL, \
    VAE_DECODE_GB, VBENCH_GB, WAN_14B, WAN_VAE_PARAMS
from raven.preflight_memory import CUDA_CONTEXT_GB, FRAGMENTATION, GB, Estimate, Geometry, Setup, Transformer, \
    dmd_estimate, fixed_estimate, grpo_estimate, streaming_estimate, training_estimate, umt5_params


@dataclass
class StageReport:
    name: str
    launcher_stage: str  # key of `launchers` in the scale file (the `raven launch --stage` name)
    estimate: Estimate
    gpu_gb: float | None
    gpus: int
    runs: bool  # False: released weights replace the stage at this scale
    lever: str

    @property
    def fits(self) -> bool:
        return self.gpu_gb is None or self.estimate.peak_gb <= self.gpu_gb

    def as_json(self) -> dict:
        return {"peak_gb_per_gpu": round(self.estimate.peak_gb, 2), "gpu_gb": self.gpu_gb, "fits": self.fits,
                "runs": self.runs, "launcher": self.launcher_stage, "gpus": self.gpus, "lever": self.lever,
                "breakdown_gb": self.estimate.breakdown_gb(), "notes": self.estimate.notes}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def text_dim(spec: RunSpec) -> int:
    if spec.text_encoder.kind == "toy":
        return spec.text_encoder.d_model
    return (read_json(Path(spec.text_encoder.path) / "config.json") or UMT5_XXL)["d_model"]


def student_of(spec: RunSpec) -> Transformer:
    dims = spec.transformer
    return Transformer(dims.num_layers, dims.inner_dim, dims.ffn_dim, text_dim(spec), dims.freq_dim,
                       spec.codec.latent_channels, tuple(dims.patch_size), dims.cross_attn_norm)


def teacher_of(spec: RunSpec, student: Transformer) -> Transformer:
    """The DMD teacher: weights.teacher's config (the 14B's published dims when absent); toy scales: the student's."""
    if spec.weights.teacher is None:
        return student
    config = read_json(Path(spec.weights.teacher) / "config.json") or WAN_14B
    return Transformer(config["num_layers"], config["num_attention_heads"] * config["attention_head_dim"],
                       config["ffn_dim"], student.text_dim, student.freq_dim, student.in_channels, student.patch)


def text_encoder_params(spec: RunSpec) -> int:
    options = spec.text_encoder
    if options.kind == "toy":
        return umt5_params(options.d_model, options.d_ff, options.num_layers, options.num_heads,
                           options.d_model // options.num_heads, 64)
    config = read_json(Path(options.path) / "config.json") or UMT5_XXL
    return umt5_params(config["d_model"], config["d_ff"], config["num_layers"], config["num_heads"], config["d_kv"],
                       config["vocab_size"])


def geometry_of(spec: RunSpec) -> Geometry:
    patch = spec.transformer.patch_size
    _, _, height, width = spec.latent_shape
    return Geometry((height // patch[1]) * (width // patch[2]), tuple(spec.chunk_frames))


def setup_of(spec: RunSpec, stage: str) -> tuple[Setup, float | None, int]:
    from raven.launch import launcher_for

    launcher = launcher_for(spec, stage)
    gpus_per_node = max(launcher.gpus_per_node, 1)
    ranks = launcher.nodes * (launcher.tasks_per_node or gpus_per_node)  # FSDP2 shards over the ranks
    precision = getattr(spec, "precision", "fp32")
    return Setup.for_ranks(ranks, 2 if precision == "bf16" else 4), launcher.gpu_mem_gb, launcher.nodes * gpus_per_node


def lever(estimate: Estimate, setup: Setup, stage: str, batch_key: str | None, rollout_key: str | None) -> str:
    """What to change when the stage does not fit, from its largest component."""
    parts = estimate.parts
    largest = max(parts, key=parts.get)
    if largest == "activations" and not setup.checkpointing:
        return f"checkpointing: shard over more GPUs (launchers.{stage}.gpus_per_node), which turns it on"
    if largest == "activations" and batch_key:
        return f"batch: lower {batch_key}"
    if largest == "kv cache":
        return f"batch: fewer rollout videos per call ({rollout_key or batch_key}), or window: set chunks.window"
    return f"sharding: more GPUs for launchers.{stage} (nodes, gpus_per_node)"


def history(spec: RunSpec, geometry: Geometry) -> int:
    return geometry.history_tokens(spec.chunks.sink, spec.chunks.window)


def report_stage(name: str, stage: str, spec: RunSpec, runs: bool, build, batch_key: str | None,
                 rollout_key: str | None = None) -> StageReport:
    setup, gpu_gb, gpus = setup_of(spec, stage)
    estimate = build(setup)
    estimate.notes.insert(0, f"{gpus} GPU(s); FSDP2 shards {setup.shards}; gradient checkpointing "
                             f"{'on' if setup.checkpointing else 'off'}; compute {8 * setup.compute_bytes}-bit"
                             + (f"; as row {spec.row}" if spec.row else ""))
    return StageReport(name, stage, estimate, gpu_gb, gpus, runs, lever(estimate, setup, stage, batch_key, rollout_key))


def rows_by(rows: dict[str, dict], specs: dict, method: str, test) -> list[RunSpec]:
    """Specs of the rows of `method` trained at this scale (not replaced by a baseline's released weights)."""
    return [specs[row] for row, settings in rows.items() if settings.get("method") == method and test(specs[row])
            and row not in specs[None].weights.baselines]


def stage_reports(specs: dict[str | None, RunSpec], rows: dict[str, dict]) -> list[StageReport]:
    """Every launched stage of the DAG: base and ODE init, each DMD history mode, CM-GRPO, Flow-GRPO,
    sampling, VBench and UnifiedReward. Several rows of one kind: the largest estimate."""
    from raven.data.latents import write_latent_part
    from raven.data.text_cache import write_part
    from raven.evaluation.options import SampleOptions
    from raven.preflight import history_modes, needs_clips
    from raven.training.base import BaseOptions
    from raven.training.causal_teacher import CausalTeacherOptions
    from raven.training.cmgrpo import CMGRPOOptions
    from raven.training.dmd import DMDOptions
    from raven.training.ode_init import OdeInitOptions, OdePairsOptions

    shared = specs[None]
    student, geometry = student_of(shared), geometry_of(shared)
    trained_inits = inits_to_train(shared, rows)
    base = stage_options(shared, "base", BaseOptions)
    teacher = stage_options(shared, "causal_teacher", CausalTeacherOptions)
    pairs = stage_options(shared, "ode_pairs", OdePairsOptions)
    ode = stage_options(shared, "ode_init", OdeInitOptions)
    vae = (WAN_VAE_PARAMS, VAE_DECODE_GB) if shared.codec.kind == "wan_vae" else (0, 0.0)

    def streaming(spec: RunSpec, videos: int):
        return lambda setup: streaming_estimate(student, geometry, setup, videos=videos, history=history(spec, geometry),
                                                text_encoder_params=text_encoder_params(spec), vae_params=vae[0],
                                                vae_gb_per_video=vae[1])

    reports = [
        report_stage("base", "base", shared, shared.weights.base is None, lambda setup: training_estimate(
            student, geometry, setup, batch=base.batch_size, interleaved=False), "stages.base.batch_size"),
        report_stage("causal_teacher", "causal_teacher", shared, "ode_causal" in trained_inits and teacher.kind == "trained",
                     lambda setup: training_estimate(student, geometry, setup, batch=teacher.batch_size, interleaved=True),
                     "stages.causal_teacher.batch_size"),
        report_stage("ode_pairs", "ode_pairs", shared, bool(trained_inits),
                     streaming(shared, pairs.batch_size * (2 if pairs.guidance != 1 else 1)), "stages.ode_pairs.batch_size"),
        report_stage("ode_init", "ode_init", shared, bool(trained_inits), lambda setup: training_estimate(
            student, geometry, setup, batch=ode.batch_size, interleaved=True), "stages.ode_init.batch_size"),
    ]
    big_teacher = teacher_of(shared, student)
    for mode in HISTORY_MODES:
        # the row kind as the first row that trains it, else as the shared spec would (no row trains it here)
        candidates = rows_by(rows, specs, "dmd", lambda spec: spec.stages.get("dmd", {}).get("history_mode") == mode)
        spec = candidates[0] if candidates else shared
        options = stage_options(spec, "dmd", DMDOptions).model_copy(update={"history_mode": mode})
        reports.append(report_stage(f"dmd_{mode}", "dmd", spec, bool(candidates), lambda setup, o=options, s=spec:
                                    dmd_estimate(student, big_teacher if o.teacher == "wan" else student, geometry,
                                                 setup, mode=mode, batch=o.micro_batch_size or o.batch_size,
                                                 student_cfg=o.rollout_guidance != 1,
                                                 teacher_cfg=o.teacher_guidance != 1, history=history(s, geometry)),
                                    "stages.dmd.micro_batch_size (slices of stages.dmd.batch_size)"))
    for name, kind in (("cmgrpo", "consistency"), ("flow_grpo", "euler_maruyama")):
        candidates = [report_stage(name, "cmgrpo", spec, True, grpo_builder(spec, student, geometry, CMGRPOOptions),
                                   "stages.cmgrpo.micro_batch_size",
                                   "stages.cmgrpo.rollout_batch_size (at most group_size x groups_per_call), "
                                   "doubled by rollout_guidance != 1")
                      for spec in rows_by(rows, specs, "cmgrpo", lambda spec: spec.sampler.kind == kind)]
        if candidates:
            reports.append(max(candidates, key=lambda report: report.estimate.peak_gb))
    encoder, prompts_per_batch = text_encoder_params(shared), inspect.signature(write_part).parameters["batch"].default
    tokens = prompts_per_batch * shared.text_encoder.max_length
    reports.append(report_stage("text_cache", "text_cache", shared, True, lambda setup: fixed_estimate(
        {"text encoder": 2 * encoder / GB, "activations": tokens * per_token_umt5(shared) / GB},
        f"the text encoder in bf16, {prompts_per_batch} prompts per batch"), None))
    if needs_clips(shared, history_modes(specs)) and vae[0]:
        clips_per_batch = inspect.signature(write_latent_part).parameters["batch"].default
        reports.append(report_stage("clip_latents", "clip_latents", shared, True, lambda setup: fixed_estimate(
            {"vae": 2 * vae[0] / GB + clips_per_batch * vae[1]},
            f"the VAE in bf16 encoding {clips_per_batch} clips per batch (decode workspace assumed alike)"), None))
    batch = stage_options(shared, "sample", SampleOptions).batch_size
    reports.append(report_stage("sample", "sample", shared, True,
                                streaming(shared, batch * (2 if shared.sampler.guidance != 1 else 1)),
                                "stages.sample.batch_size"))
    if "vbench" in shared.stages:
        reports.append(report_stage("vbench", "vbench", shared, True, lambda setup: fixed_estimate(
            {"vbench models and one video": VBENCH_GB}, "VBench's models, one dimension at a time (assumed)"), None))
    if "unified_reward" in shared.stages:
        config = read_json(Path(shared.stages["unified_reward"].get("model") or "") / "config.json")
        params = QWEN_32B_PARAMS if config is None else qwen_params(config)
        judge_gpus = setup_of(shared, "unified_reward")[2]
        reports.append(report_stage("unified_reward", "unified_reward", shared, True, lambda setup: fixed_estimate(
            {"weights": 2 * params / GB / judge_gpus, "activations and KV": JUDGE_WORKSPACE_GB},
            f"UnifiedReward-qwen-32b in bf16, layers spread over {judge_gpus} GPU(s) (device_map auto)"), None))
    return reports


def inits_to_train(shared: RunSpec, rows: dict[str, dict]) -> set[str]:
    """ODE inits some trained DMD row starts from and whose released weights are not given (those replace
    the causal teacher, the ODE pairs and the regression: raven.training.ode_init.released_init)."""
    return {settings["init"] for row, settings in rows.items() if settings.get("method") == "dmd"
            and row not in shared.weights.baselines
            and shared.weights.released_init(INIT_MODES[settings["init"]]) is None}


def per_token_umt5(spec: RunSpec) -> float:
    """Bytes per token of a no-grad bf16 UMT5 pass: a few hidden-width tensors and the gated FFN's two."""
    config = UMT5_XXL if spec.text_encoder.kind == "umt5" else {"d_model": spec.text_encoder.d_model,
                                                                 "d_ff": spec.text_encoder.d_ff}
    return 2 * (6 * config["d_model"] + 2 * config["d_ff"])


def grpo_builder(spec: RunSpec, student: Transformer, geometry: Geometry, options_class):
    options = stage_options(spec, "cmgrpo", options_class)
    per_call = options.group_size * options.groups_per_call
    rollout = min(per_call, options.rollout_batch_size or per_call) * (2 if options.rollout_guidance != 1 else 1)
    rewards = sum(REWARD_MODELS_GB.values()) * GB if options.rewards.kind == "model" else 0.0
    return lambda setup: grpo_estimate(student, geometry, setup, rollout_videos=rollout,
                                       micro_batch=options.micro_batch_size, interleaved=options.history_mode == "raven",
                                       lora_rank=options.lora_rank, reference=options.kl_beta > 0, reward_bytes=rewards,
                                       history=history(spec, geometry))


def qwen_params(config: dict) -> float:
    """Parameters of a Qwen2.5-VL language model from its config (the vision tower adds under 0.7B)."""
    text = config.get("text_config", config)
    d, layers, ff, vocab = text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"], text["vocab_size"]
    kv = d * text.get("num_key_value_heads", text["num_attention_heads"]) // text["num_attention_heads"]
    return layers * (2 * d * d + 2 * d * kv + 3 * d * ff) + 2 * vocab * d + 0.7e9


def assumptions() -> dict:
    return {"memory model": "raven/preflight_memory.py (activation coefficients fitted to CPU MemTracker peaks)",
            "cuda_context_gb": CUDA_CONTEXT_GB, "allocator_overhead": FRAGMENTATION,
            "vae_decode_gb_per_video": VAE_DECODE_GB, "reward_models_gb": REWARD_MODELS_GB, "vbench_gb": VBENCH_GB,
            "unified_reward_params_if_no_config": QWEN_32B_PARAMS, "teacher_dims_if_no_config": WAN_14B,
            "text_encoder_if_no_config": UMT5_XXL,
            "trained models": "fp32 master weights, fp32 grads, AdamW fp32 moments, fp32 EMA, all FSDP2-sharded",
            "frozen models": "bf16 teacher/reference, sharded when the stage has several GPUs; bf16 text encoder "
                             "and VAE, unsharded, in sampling only (trainers read the text-embedding cache)"}


@dataclass
class Preflight:
    scale: str
    problems: list  # raven.preflight.Problem
    stages: list[StageReport]

    @property
    def failures(self) -> list[str]:
        """Missing or malformed paths, and stages that run here and would not fit their GPUs."""
        return [f"missing or malformed: {problem}" for problem in self.problems] + [
            f"stage {stage.name} would not fit: {stage.estimate.peak_gb:.1f} GB per GPU > {stage.gpu_gb:g} GB "
            f"(launchers.{stage.launcher_stage}); lever: {stage.lever}" for stage in self.stages if stage.runs and not stage.fits]

    def as_json(self) -> dict:
        return {"scale": self.scale, "ok": not self.failures, "failures": self.failures,
                "stages": {stage.name: stage.as_json() for stage in self.stages}, "assumptions": assumptions()}

    def table(self) -> str:
        lines = [f"{'stage':<22}{'launcher':<16}{'GPUs':>6}{'peak GB/GPU':>13}{'GPU GB':>8}  status"]
        for stage in self.stages:
            status = "fits" if stage.fits else "DOES NOT FIT"
            status += "" if stage.runs else " (not run at this scale)"
            gpu = "-" if stage.gpu_gb is None else f"{stage.gpu_gb:g}"
            lines.append(f"{stage.name:<22}{stage.launcher_stage:<16}{stage.gpus:>6}{stage.estimate.peak_gb:>13.1f}"
                         f"{gpu:>8}  {status}")
        return "\n".join(lines)


def run_preflight(config_dir: str | Path, scale: str | None, settings: dict | None = None) -> Preflight:
    """Resolve the shared spec and every row's spec of `scale`, check their paths and estimate every stage."""
    from raven.config import load_experiments, resolve_spec
    from raven.preflight import check_paths

    shared = resolve_spec(config_dir, scale, None, settings)
    rows = load_experiments(config_dir)
    specs = {None: shared, **{row: resolve_spec(config_dir, shared.scale, row, settings) for row in rows}}
    return Preflight(shared.scale, check_paths(specs), stage_reports(specs, rows))
