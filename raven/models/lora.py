"""LoRA on the diffusers Wan transformer through peft, injected in place (the model stays a
`WanTransformer3DModel`, so causal processors, EMA and `save_pretrained` keep working).

- `add_lora(model, rank, alpha, seed=...)`: a trainable adapter on the modules docs/method.md §8 lists (self/cross-attention
  q, k, v, o; FFN linears; text/time embedding linears; output head); base weights frozen.
- `save_lora(model, folder)`: peft's folder format (`adapter_config.json` + `adapter_model.safetensors`, keys
  under `base_model.model.` as `PeftModel.save_pretrained` writes them, so `PeftModel.from_pretrained` reads it).
- `load_lora(model, source)`: such a folder, or a LongLive-style file (`torch.save({"generator_lora": ...})`
  of peft keys over the original Wan names, no config: rank from the weights, alpha given or = rank).
- `merge_lora(model)`: fold the adapter into the base weights and remove the peft layers.
- `load_transformer_with_lora(base, adapter, spec)`: LongLive's base + LoRA.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from raven.models.checkpoints import (
    SHOWN_KEYS,
    CheckpointError,
    load_transformer,
    read_raw,
    strip_common_prefix,
    to_diffusers_keys,
    unwrap,
)

# docs/method.md §8, as regular expressions over the diffusers module names (peft matches a string target fully).
POLICY_TARGETS = (
    r"blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
    r"|blocks\.\d+\.ffn\.net\.(0\.proj|2)"
    r"|condition_embedder\.(text_embedder|time_embedder)\.linear_[12]"
    r"|condition_embedder\.time_proj"
    r"|proj_out"
)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
LONGLIVE_ENTRY = "generator_lora"


def add_lora(model: torch.nn.Module, rank: int, alpha: float, targets: str | list[str] = POLICY_TARGETS,
             adapter_name: str = "default", seed: int = 0) -> torch.nn.Module:
    """Inject a fresh LoRA adapter (B = 0: the model's outputs are unchanged) and freeze everything else.
    peft draws A on the CPU from torch's global generator: it is seeded with `seed` here (and restored after),
    so that every process and every rank starts from the same adapter, whatever ran before in the process."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        model.add_adapter(config, adapter_name)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def lora_state_dict(model: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The adapter's tensors, keyed by module name + `lora_A.weight` / `lora_B.weight` (no adapter name)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name=adapter_name)


def save_lora(model: torch.nn.Module, folder: str | Path, adapter_name: str = "default") -> Path:
    """Write the adapter as a peft folder, beside `folder` first and renamed in (a reader never sees half)."""
    from raven.io import save_tensors

    folder = Path(folder)
    staging = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.peft_config[adapter_name].save_pretrained(staging)
    state = {PEFT_PREFIX + k: v.detach().contiguous().cpu() for k, v in lora_state_dict(model, adapter_name).items()}
    save_tensors(state, staging / ADAPTER_WEIGHTS, metadata={"format": "pt"})  # peft's config is plain JSON
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def load_lora(model: torch.nn.Module, source: str | Path, *, alpha: float | None = None,
              key: str = LONGLIVE_ENTRY, adapter_name: str = "default") -> torch.nn.Module:
    """Inject the adapter stored at `source` (peft folder or LongLive-style file) into `model`, strictly."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such LoRA adapter folder or file")
    state, config = read_adapter(source, alpha, key)
    absent = sorted(config.target_modules - {name for name, _ in model.named_modules()})
    if absent:
        raise CheckpointError(f"{source}: the adapter is for {len(absent)} modules the transformer lacks, e.g. "
                              f"{absent[:SHOWN_KEYS]}; was it trained on this architecture?")
    model.add_adapter(config, adapter_name)
    set_adapter_weights(model, state, adapter_name, source)
    return model


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every adapter into the base weights (W + alpha/r·BA) and remove the peft layers, in place."""
    model.fuse_lora()
    model.unload_lora()
    return model


def load_transformer_with_lora(base: str | Path, adapter: str | Path, spec: Any, *, key: str | None = None,
                               alpha: float | None = None, merge: bool = True) -> torch.nn.Module:
    """LongLive's base + LoRA: the base transformer (any `load_transformer` format, `key` picks e.g.
    `generator_ema`) with the adapter loaded on top, merged unless `merge=False`."""
    model = load_lora(load_transformer(base, spec, key=key), adapter, alpha=alpha)
    return merge_lora(model) if merge else model


# --- reading adapters ---------------------------------------------------------------------------------------------

def read_adapter(source: Path, alpha: float | None, key: str) -> tuple[dict[str, torch.Tensor], Any]:
    """Adapter tensors over diffusers module names and the LoraConfig that injects exactly those modules
    (rank from the weights; alpha from the argument, else the folder's config, else = rank as in LongLive)."""
    from peft import LoraConfig

    if source.is_dir():
        if not (source / ADAPTER_CONFIG).is_file():
            raise CheckpointError(f"{source}: no {ADAPTER_CONFIG}; expected a peft adapter folder "
                                  f"({ADAPTER_CONFIG} + {ADAPTER_WEIGHTS})")
        config = LoraConfig.from_pretrained(str(source))
        state, saved_alpha = adapter_keys(read_raw(source / ADAPTER_WEIGHTS)), config.lora_alpha
    else:
        raw = read_raw(source)
        state, saved_alpha = adapter_keys(unwrap(raw, key if key in raw else None, source)), None
        config = LoraConfig()
    config.r = uniform_rank(state, source)
    config.lora_alpha = next(a for a in (alpha, saved_alpha, config.r) if a is not None)
    config.target_modules = adapted_modules(state)
    config.rank_pattern, config.alpha_pattern = {}, {}
    return state, config


def adapter_keys(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as diffusers module names: peft's `base_model.model.` and a wrapper's `model.` dropped, original
    Wan names converted by diffusers' converter."""
    return to_diffusers_keys(strip_common_prefix({k.removeprefix(PEFT_PREFIX): v for k, v in raw.items()}))


def adapted_modules(state: Mapping[str, torch.Tensor]) -> set[str]:
    return {k.split(".lora_", 1)[0] for k in state}


def uniform_rank(state: Mapping[str, torch.Tensor], source: Path) -> int:
    not_lora = sorted(k for k in state if not k.endswith((".lora_A.weight", ".lora_B.weight")))
    if not_lora:
        raise CheckpointError(f"{source}: entries that are not LoRA weights: {not_lora[:SHOWN_KEYS]}; expected "
                              "<module>.lora_A.weight / <module>.lora_B.weight")
    ranks = {v.shape[0] for k, v in state.items() if k.endswith(".lora_A.weight")}
    if not ranks:
        raise CheckpointError(f"{source}: no lora_A weights; not a LoRA adapter")
    if len(ranks) != 1:
        raise CheckpointError(f"{source}: LoRA ranks {sorted(ranks)} differ across modules; expected one rank")
    return ranks.pop()


def set_adapter_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], adapter_name: str,
                        source: Path) -> None:
    """`set_peft_model_state_dict`, then an error if any adapter tensor was left unset or unused."""
    from peft import set_peft_model_state_dict

    try:
        result = set_peft_model_state_dict(model, state, adapter_name=adapter_name)
    except RuntimeError as error:  # torch's size-mismatch report
        mismatches = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        raise CheckpointError(f"{source}: adapter weights of other shapes than the transformer's: "
                              f"{mismatches[:SHOWN_KEYS]}; was it trained on this architecture?") from None
    missing = sorted(k for k in result.missing_keys if "lora_" in k and f".{adapter_name}." in k)
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{source}: the adapter does not fit the transformer: {len(missing)} missing LoRA keys "
            f"{missing[:SHOWN_KEYS]}, {len(result.unexpected_keys)} unexpected keys "
            f"{sorted(result.unexpected_keys)[:SHOWN_KEYS]}")
