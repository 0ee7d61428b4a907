"""`raven preflight`: before anything is queued, check every local weight and data path the DAG needs and
each stage's peak GPU memory per device against its launcher (README "Running on SLURM").

Path checks read only what is cheap: config.json keys, safetensors headers (tensor names and shapes),
CSV header lines. Each problem names the config key and the path. Memory comes from the analytic
model of `raven.preflight_memory`; a stage that would not fit names the lever to pull.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from raven.config import RunSpec, stage_options
from raven.config.spec import REAL_CLIP_MODES

# Published dims used when a model's own config.json is absent (the path check reports it missing).
WAN_14B = {"num_layers": 40, "num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824}
UMT5_XXL = {"d_model": 4096, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "d_kv": 64, "vocab_size": 256384}
WAN_VAE_PARAMS = 126_892_531  # Wan2.1 VAE (AutoencoderKLWan)
VAE_DECODE_GB = 3.0  # one 81x480x832 video through the causal VAE decoder, bf16 (assumed; see gpu_check)
REWARD_MODELS_GB = {"videoalign (Qwen2-VL-2B, bf16)": 4.4, "CLIP ViT-L/14 vision": 1.2, "RAFT, MUSIQ, AMT-S": 0.3,
                    "decoded group videos and reward activations": 6.0}
QWEN_32B_PARAMS = 33.5e9  # UnifiedReward-qwen-32b (Qwen2.5-VL-32B), bf16 on one GPU
JUDGE_WORKSPACE_GB = 4.0  # vision tower and KV of ~2,600 video tokens at 2 fps (assumed)
VBENCH_GB = 16.0  # VBench loads one dimension's models at a time (assumed; largest: GRiT/ViCLIP/DINO)
HISTORY_MODES = ("raven", "sf", "df", "tf", "df_self_rollout")


@dataclass(frozen=True)
class Problem:
    key: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.key} = {self.path}: {self.message}"


def safetensors_header(path: Path) -> dict:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))


def read_config(folder: Path, key: str, problems: list[Problem], expect: str) -> dict | None:
    """`folder/config.json`, or None with a problem naming the key."""
    if not folder.is_dir():
        problems.append(Problem(key, str(folder), f"missing; expected {expect}"))
        return None
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        problems.append(Problem(key, str(folder), f"no readable config.json ({error}); expected {expect}"))
        return None


def check_transformer(folder: Path, key: str, problems: list[Problem], dims: dict | None = None) -> dict | None:
    """A diffusers WanTransformer3DModel folder: its config, and the first block's query weight in the
    safetensors header has shape [inner, inner]; `dims` (from the spec) must match the config."""
    config = read_config(folder, key, problems, "a diffusers WanTransformer3DModel folder (config.json + safetensors)")
    if config is None:
        return None
    if config.get("_class_name") != "WanTransformer3DModel":
        problems.append(Problem(key, str(folder), f"config.json _class_name {config.get('_class_name')!r}, "
                                                  "expected 'WanTransformer3DModel'"))
    for name, value in (dims or {}).items():
        if config.get(name) != value:
            problems.append(Problem(key, str(folder), f"config.json {name} = {config.get(name)!r}, the spec's "
                                                      f"transformer.{name} is {value!r}"))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        problems.append(Problem(key, str(folder), "no *.safetensors weights"))
        return config
    name, inner = "blocks.0.attn1.to_q.weight", config.get("num_attention_heads", 0) * config.get("attention_head_dim", 0)
    shapes = {}
    for file in files:
        shapes.update({k: v.get("shape") for k, v in safetensors_header(file).items() if k != "__metadata__"})
    if shapes.get(name) != [inner, inner]:
        problems.append(Problem(key, str(folder), f"tensor {name} has shape {shapes.get(name)}, expected {[inner, inner]}"))
    return config


def check_file(path: Path | None, key: str, problems: list[Problem], expect: str) -> None:
    if path is None:
        problems.append(Problem(key, "(unset)", f"not set; expected {expect}"))
    elif not path.is_file() or path.stat().st_size == 0:
        problems.append(Problem(key, str(path), f"missing or empty; expected {expect}"))


def check_csv(path: Path, key: str, columns: list[str], problems: list[Problem]) -> None:
    if not path.is_file():
        problems.append(Problem(key, str(path), f"missing; expected a CSV with columns {columns}"))
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = [name.strip().strip('"') for name in handle.readline().strip().split(",")]
    missing = [name for name in columns if name not in header]
    if missing:
        problems.append(Problem(key, str(path), f"header lacks column(s) {missing}; it has {header}"))


def spec_dims(spec: RunSpec) -> dict:
    dims = spec.transformer
    return {"num_layers": dims.num_layers, "num_attention_heads": dims.num_attention_heads,
            "attention_head_dim": dims.attention_head_dim, "ffn_dim": dims.ffn_dim}


def needs_clips(shared: RunSpec, history_modes) -> bool:
    """Real clips are read by the TF/DF rows (raven.training.history) and by a base trained here by flow."""
    flow_base = shared.weights.base is None and shared.stages.get("base", {}).get("objective", "flow") == "flow"
    return flow_base or any(mode in REAL_CLIP_MODES for mode in history_modes)


def history_modes(specs: dict[str | None, RunSpec]) -> list[str | None]:
    return [spec.stages.get("dmd", {}).get("history_mode") for spec in specs.values()]


def check_paths(specs: dict[str | None, RunSpec], clips: bool | None = None) -> list[Problem]:
    """Every local weight and data path the DAG of these specs (None: the shared spec) reads; `clips`: whether
    the DAG reads real clips (default: from the specs' history modes)."""
    problems: list[Problem] = []
    shared = specs[None]
    weights = {}
    for spec in specs.values():
        for key, value in spec.weights.model_dump().items():
            entries = [(key, value)] if key != "baselines" else [
                (f"baselines.{row}.{field}", path) for row, baseline in value.items()
                for field, path in baseline.items() if field != "key" and path is not None]
            weights.update({(name, str(path)): (name, path) for name, path in entries if path is not None})
    for key, path in weights.values():
        path, key = Path(path), f"weights.{key}"
        if key in ("weights.teacher", "weights.base"):
            check_transformer(path, key, problems, spec_dims(shared) if key == "weights.base" else None)
        elif not path.exists():
            problems.append(Problem(key, str(path), "missing; expected a released checkpoint (file or folder)"))
    if shared.codec.kind == "wan_vae":
        config = read_config(Path(shared.codec.path), "codec.path", problems, "a diffusers AutoencoderKLWan folder")
        if config is not None and config.get("z_dim") != shared.codec.latent_channels:
            problems.append(Problem("codec.path", str(shared.codec.path), f"config.json z_dim {config.get('z_dim')!r}, "
                                    f"codec.latent_channels is {shared.codec.latent_channels}"))
    if shared.text_encoder.kind == "umt5":
        read_config(Path(shared.text_encoder.path), "text_encoder.path", problems, "a transformers UMT5 encoder folder")
        tokenizer = Path(shared.text_encoder.tokenizer_path or shared.text_encoder.path)
        if not any((tokenizer / name).is_file() for name in ("tokenizer.json", "spiece.model")):
            problems.append(Problem("text_encoder.tokenizer_path", str(tokenizer),
                                    "no tokenizer.json or spiece.model; expected the Wan2.1 tokenizer folder"))
    check_data(shared, needs_clips(shared, history_modes(specs)) if clips is None else clips, problems)
    for spec in specs.values():
        rewards = spec.stages.get("cmgrpo", {}).get("rewards", {})
        if rewards.get("kind") == "model":
            check_rewards(rewards, problems)
    for stage, key, what in (("vbench", "cache_dir", "VBench's weights folder"),
                             ("unified_reward", "model", "the UnifiedReward-qwen-32b folder")):
        options = shared.stages.get(stage)
        if options is not None and not Path(options.get(key) or "").is_dir():
            problems.append(Problem(f"stages.{stage}.{key}", str(options.get(key)), f"missing; expected {what}"))
    return sorted(set(problems), key=lambda p: (p.key, p.path))


def check_data(spec: RunSpec, clips: bool, problems: list[Problem]) -> None:
    from raven.data.options import DataOptions

    data = stage_options(spec, "data", DataOptions)
    if data.prompt_source == "vidprom" and data.vidprom_path.suffix != ".parquet":
        check_csv(data.vidprom_path, "stages.data.vidprom_path", [data.prompt_column, *data.safety_columns], problems)
    elif data.prompt_source == "vidprom":
        check_file(data.vidprom_path, "stages.data.vidprom_path", problems, "VidProM metadata (parquet)")
    if data.prompt_source == "file":
        check_file(data.prompt_file, "stages.data.prompt_file", problems, "one prompt per line")
    if clips and data.clip_source == "openvid":
        check_csv(data.openvid_path / data.openvid_csv, "stages.data.openvid_csv", ["video", "caption"], problems)
    if clips and data.interpolator == "rife":
        check_file(data.rife_path, "stages.data.rife_path", problems, "Practical-RIFE flownet.pkl")


def check_rewards(rewards: dict, problems: list[Problem]) -> None:
    key = "stages.cmgrpo.rewards"
    for name in ("raft", "aesthetic_head", "musiq"):
        check_file(Path(rewards[name]) if rewards.get(name) else None, f"{key}.{name}", problems, "a checkpoint file")
    for name in ("videoalign", "videoalign_base", "clip"):
        folder = Path(rewards.get(name) or "")
        if not rewards.get(name) or not folder.is_dir():
            problems.append(Problem(f"{key}.{name}", str(rewards.get(name)), "missing; expected a model folder"))
        elif name != "videoalign":
            read_config(folder, f"{key}.{name}", problems, "a transformers model folder")


def quick_warnings(config_dir: str | Path, scale: str, settings: dict, report: str | Path) -> list[str]:
    """What Snakemake prints when it plans a cluster run (also `-n`), without importing torch and without
    resolving every row (planning stays fast): the shared spec's path problems, and the stages that did not
    fit in the last preflight report at `report`, if any."""
    from raven.config import load_experiments, resolve_spec
    from raven.config.load import row_overrides

    shared = resolve_spec(config_dir, scale, None, settings)
    modes = [row_overrides(config_dir, row, scale).get("stages", {}).get("dmd", {}).get("history_mode")
             for row in load_experiments(config_dir)] + history_modes({None: shared})
    problems = check_paths({None: shared}, needs_clips(shared, modes))
    warnings = [f"missing or malformed: {problem}" for problem in problems]
    try:
        last = json.loads(Path(report).read_text())
    except (OSError, ValueError):
        return warnings + [f"no memory estimate yet ({report}): `raven preflight --scale {scale}` runs as the first job"]
    return warnings + [failure for failure in last.get("failures", []) if failure.startswith("stage ")]
