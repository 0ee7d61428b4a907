"""Loading Wan transformer weights from every format the pipeline meets, always strictly.

Supported (`load_transformer(path, spec)`):
- a diffusers folder (`config.json` + `diffusion_pytorch_model*.safetensors`, sharded or not), as written by
  `save_pretrained` / `raven.training.loop.export_pretrained`; its config is checked against the run spec;
- a folder of the original Wan release (`config.json` of `WanModel` + safetensors shards);
- single files: `.safetensors`, a sharded `*.safetensors.index.json`, `.pt` / `.pth` read with
  `torch.load(weights_only=True)` only (a pickle that would run code is refused, never executed);
- original Wan key names, converted by diffusers' own `convert_wan_transformer_to_diffusers`;
- causal-distillation wrappers (Self-Forcing, CausVid, Causal Forcing, Rolling/Reward Forcing, LongLive): a
  top-level `generator` / `generator_ema` / `model` / `state_dict` entry (`key=` picks one), a `model.` prefix on
  every key, and the FSDP / activation-checkpointing / torch.compile wrapper names their EMA copies keep inside
  keys (`_fsdp_wrapped_module.`, `_checkpoint_wrapped_module.`, `_orig_mod.`);
- a baseline's released checkpoint as `weights.baselines.<row>` names it (`load_student`: path, entry, LoRA).

Missing, unexpected or mis-shaped keys are an error listing a few of them; nothing is silently initialised.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from raven.config import ConfigError

SHOWN_KEYS = 5
WRAPPER_ENTRIES = ("generator", "generator_ema", "model", "state_dict")
WRAPPER_PREFIX = "model."  # WanDiffusionWrapper.model in Self-Forcing / CausVid / LongLive
# Module-wrapper names inside keys: an EMA copy taken from an FSDP(1) model keeps `_fsdp_wrapped_module.` per
# wrapped block (Self-Forcing's and its descendants' `generator_ema`; their inference scripts strip it too).
WRAPPER_NAMES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
DIFFUSERS_CLASS = "WanTransformer3DModel"
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
ORIGINAL_WAN_MARKERS = ("self_attn.", "cross_attn.", "head.modulation", "time_embedding.")


class CheckpointError(ConfigError):
    """A checkpoint that cannot be loaded into the transformer the run spec describes (the `raven` command
    reports it as a config error: the weights path or the dims in the config must change)."""


def load_transformer(path: str | Path, spec: Any, *, key: str | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The `WanTransformer3DModel` stored at `path` (any supported format), loaded strictly.

    `key` picks an entry of a wrapped checkpoint (e.g. `"generator_ema"`); by default the first of
    `generator`, `generator_ema`, `model`, `state_dict` present is used.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or folder; check the path given for the model")
    if path.is_dir() and is_diffusers_folder(path):
        return load_diffusers_folder(path, spec, dtype)
    state = read_state_dict(path, key)
    model = new_transformer(spec)
    load_strict(model, to_diffusers_keys(state), path)
    return model.to(dtype).eval()  # as from_pretrained returns it


# --- diffusers folders -------------------------------------------------------------------------------------------

def is_diffusers_folder(folder: Path) -> bool:
    config = folder / "config.json"
    return config.is_file() and read_config(config).get("_class_name") == DIFFUSERS_CLASS


def read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); re-export the model folder") from None


def load_diffusers_folder(folder: Path, spec: Any, dtype: torch.dtype) -> torch.nn.Module:
    """`from_pretrained(local_files_only)`, strict, then its architecture checked against the spec."""
    from diffusers import WanTransformer3DModel

    from raven.models.transformer import check_architecture

    check_weight_files(folder)
    model, info = WanTransformer3DModel.from_pretrained(folder, local_files_only=True, torch_dtype=dtype,
                                                        output_loading_info=True)
    raise_on_key_mismatch(folder, info["missing_keys"], info["unexpected_keys"])
    if info["mismatched_keys"]:
        raise CheckpointError(f"{folder}: weights with shapes other than config.json says: "
                              f"{sorted(k for k, *_ in info['mismatched_keys'])[:SHOWN_KEYS]}; re-export the folder")
    check_architecture(model, spec, str(folder / "config.json"))
    return own_aligned_storage(model)


def own_aligned_storage(model: torch.nn.Module) -> torch.nn.Module:
    """Copy CPU tensors that `from_pretrained` left as views into the memory-mapped file at offsets that are not
    64-byte aligned: the CPU kernels take other paths on them, and a loaded model would then compute other
    last bits than the same weights held in memory (or than a resumed run). Only such tensors are copied."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type == "cpu" and tensor.data_ptr() % 64:
            tensor.data = tensor.data.clone()
    return model


def check_weight_files(folder: str | Path) -> None:
    """Every `*.safetensors` under `folder` has a header that covers its data: a truncated or damaged copy is
    one CheckpointError naming the file, not a long traceback from inside `from_pretrained`."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({error}); re-download or re-export "
                                  f"the folder {folder}") from None


# --- single files and original-format folders --------------------------------------------------------------------

def read_state_dict(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """The flat tensor dict stored at `path`, unwrapped (`key` entry or prefix) and with `model.` stripped."""
    raw = read_raw(path)
    return strip_common_prefix(strip_wrapper_names(unwrap(raw, key, path)))


def read_raw(path: Path) -> Mapping[str, Any]:
    if path.is_dir():
        return read_raw(weights_in_folder(path))
    name = path.name
    if name.endswith(".safetensors.index.json"):
        return read_sharded(path)
    if name.endswith(".safetensors"):
        return read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return read_torch_file(path)
    raise CheckpointError(f"{path}: unknown checkpoint format; expected a diffusers folder, .safetensors, "
                          f".safetensors.index.json or one of {list(TORCH_SUFFIXES)} (torch.save)")


def weights_in_folder(folder: Path) -> Path:
    """The single weights entry point of a non-diffusers folder (original Wan release layout)."""
    candidates = sorted(folder.glob("*.safetensors.index.json")) or sorted(folder.glob("*.safetensors"))
    if len(candidates) != 1:
        found = [p.name for p in sorted(folder.iterdir())][:10]
        raise CheckpointError(f"{folder}: expected a diffusers folder (config.json of {DIFFUSERS_CLASS}) or exactly "
                              f"one .safetensors file or .safetensors.index.json; found {found}")
    return candidates[0]


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({error}); re-download or re-export it") from None


def read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """All shards named by a `*.safetensors.index.json` (its `weight_map`), checked against the map."""
    weight_map = read_config(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no 'weight_map' (key -> shard file); not a safetensors shard index")
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{index}: shard {shard} is missing from {index.parent}; copy every shard")
        state.update(read_safetensors(shard_path))
    listed_only = sorted(set(weight_map) - set(state))
    if listed_only:
        raise CheckpointError(f"{index}: {len(listed_only)} keys of weight_map are in no shard, e.g. "
                              f"{listed_only[:SHOWN_KEYS]}")
    return state


def read_torch_file(path: Path) -> Mapping[str, Any]:
    """`torch.load(weights_only=True)`: tensors and plain containers only; code in the pickle is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = unpickler_reason(error)
        if "unsupported global" in reason.lower():  # torch 2.13 says "Unsupported GLOBAL", older "global"
            raise CheckpointError(
                f"{path}: refused to unpickle: it holds objects other than tensors and plain containers, which "
                f"could run code ({reason}); convert it to safetensors in a trusted environment") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason}); re-download or re-export it") from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({error}); re-download or re-export it") from None


def unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The specific part of torch's long weights-only error (what the unpickler refused)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    detail = text.split(marker, 1)[1] if marker in text else text
    detail = detail.split("Check the documentation")[0].split(" Please use")[0]
    return " ".join(detail.split())


def unwrap(raw: Mapping[str, Any], key: str | None, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of `raw[key]` (nested wrapper) or of the keys under `key.` (flat file)."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, expected a dict of tensors")
    if key is None:
        key = next((entry for entry in WRAPPER_ENTRIES if isinstance(raw.get(entry), Mapping)), None)
    if key is None:
        return tensors_only(raw, path)
    if isinstance(raw.get(key), Mapping):
        return tensors_only(raw[key], path)
    prefixed = {k[len(key) + 1:]: v for k, v in raw.items() if k.startswith(f"{key}.")}
    if not prefixed:
        entries = sorted(k for k, v in raw.items() if isinstance(v, Mapping))
        raise CheckpointError(f"{path}: no entry or key prefix {key!r}; its entries are {entries[:10]}")
    return tensors_only(prefixed, path)


def tensors_only(state: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    others = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise CheckpointError(f"{path}: entries that are not tensors: {others[:SHOWN_KEYS]}; pass key= to pick "
                              f"the weights entry (one of {list(WRAPPER_ENTRIES)})")
    return dict(state)


def strip_wrapper_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without FSDP / checkpoint / compile wrapper names (`WRAPPER_NAMES`), wherever they occur."""
    def plain(key: str) -> str:
        for name in WRAPPER_NAMES:
            key = key.replace(name, "")
        return key

    renamed = {plain(k): v for k, v in state.items()}
    if len(renamed) != len(state):
        raise CheckpointError(f"keys that differ only by wrapper names {list(WRAPPER_NAMES)}: the checkpoint holds "
                              "two copies of some weights; pass key= to pick one entry")
    return renamed


def strip_common_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the wrapper's `model.` when every key has it, but not ComfyUI's `model.diffusion_model.`, which
    the Wan converter handles."""
    if state and all(k.startswith(WRAPPER_PREFIX) and not k.startswith("model.diffusion_model.") for k in state):
        return {k[len(WRAPPER_PREFIX):]: v for k, v in state.items()}
    return state


def to_diffusers_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan key names -> diffusers names with diffusers' own converter; diffusers names pass through."""
    if not any(marker in k for k in state for marker in ORIGINAL_WAN_MARKERS):
        return state
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    return convert_wan_transformer_to_diffusers(dict(state))


# --- released baselines ---------------------------------------------------------------------------------------

def load_student(path: str | Path, spec: Any, *, key: str | None = None, lora: str | Path | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A causal student: a folder trained here, or a baseline's released checkpoint as `weights.baselines.<row>`
    names it (docs/method.md §9): `path` in any format above, `key` the entry (e.g. `generator_ema` for EMA weights), and
    for LongLive a `lora` merged into it."""
    if lora is None:
        return load_transformer(path, spec, key=key, dtype=dtype)
    from raven.models.lora import load_transformer_with_lora  # LoRA loading builds on this module

    return load_transformer_with_lora(path, lora, spec, key=key).to(dtype)


# --- strict loading ------------------------------------------------------------------------------------------------

def new_transformer(spec: Any) -> torch.nn.Module:
    """The spec's transformer with parameters on the meta device (no random init of weights about to be
    replaced: seconds at 1.3B); buffers such as the RoPE tables are built for real."""
    from accelerate import init_empty_weights

    from raven.models.transformer import build_transformer

    with init_empty_weights(include_buffers=False):
        return build_transformer(spec)


def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """`load_state_dict(strict=True, assign=True)` with errors listing a few missing/unexpected/mis-shaped keys."""
    expected = model.state_dict()
    raise_on_key_mismatch(source, sorted(set(expected) - set(state)), sorted(set(state) - set(expected)))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{source}: {len(wrong)} weights have shapes other than the spec's transformer "
                              f"(checkpoint vs spec): {wrong[:SHOWN_KEYS]}; check the transformer.* dims of the scale")
    model.load_state_dict(dict(state), strict=True, assign=True)


def raise_on_key_mismatch(source: Path, missing: list[str], unexpected: list[str]) -> None:
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not match a WanTransformer3DModel of the spec's architecture: "
            f"{len(missing)} missing keys {sorted(missing)[:SHOWN_KEYS]}, {len(unexpected)} unexpected keys "
            f"{sorted(unexpected)[:SHOWN_KEYS]}; pass key= for a wrapped checkpoint or check that it is a Wan "
            "transformer")
