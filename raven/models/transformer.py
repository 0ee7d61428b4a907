"""The diffusers Wan transformer built from a run spec (student, critic and base share its dims)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import WanTransformer3DModel

from raven.config import ConfigError, RunSpec

# Absolute latent-frame RoPE positions must cover videos several times the training horizon (drift tests).
ROPE_MAX_SEQ_LEN = 1024


def transformer_config(spec: RunSpec, text_dim: int) -> dict[str, Any]:
    dims = spec.transformer
    return {
        "patch_size": tuple(dims.patch_size),
        "num_attention_heads": dims.num_attention_heads,
        "attention_head_dim": dims.attention_head_dim,
        "in_channels": spec.codec.latent_channels,
        "out_channels": spec.codec.latent_channels,
        "text_dim": text_dim,
        "freq_dim": dims.freq_dim,
        "ffn_dim": dims.ffn_dim,
        "num_layers": dims.num_layers,
        "cross_attn_norm": dims.cross_attn_norm,
        "qk_norm": dims.qk_norm,
        "eps": dims.eps,
        "rope_max_seq_len": ROPE_MAX_SEQ_LEN,
    }


def build_transformer(spec: RunSpec) -> WanTransformer3DModel:
    """A random-initialised Wan transformer (seed it with torch.manual_seed first)."""
    from raven.models.text import text_width

    return WanTransformer3DModel(**transformer_config(spec, text_width(spec)))


def check_architecture(model: torch.nn.Module, spec: RunSpec, source: str) -> None:
    """Raise when a loaded transformer's dims differ from the spec's (`transformer.*`, `codec.latent_channels`)."""
    from raven.models.text import text_width

    expected = transformer_config(spec, text_width(spec))
    keys = {
        "num_layers": "transformer.num_layers",
        "num_attention_heads": "transformer.num_attention_heads",
        "attention_head_dim": "transformer.attention_head_dim",
        "ffn_dim": "transformer.ffn_dim",
        "in_channels": "codec.latent_channels",
        "out_channels": "codec.latent_channels",
        "text_dim": "text_encoder (its hidden width)",
        "patch_size": "transformer.patch_size",
        "freq_dim": "transformer.freq_dim",
        "qk_norm": "transformer.qk_norm",
        "cross_attn_norm": "transformer.cross_attn_norm",
        "eps": "transformer.eps",
    }
    wrong = [
        f"{key}: checkpoint {model.config[key]!r}, spec {expected[key]!r} (config key {config_key})"
        for key, config_key in keys.items()
        if tuple(np_list(model.config[key])) != tuple(np_list(expected[key]))
    ]
    if wrong:
        raise ConfigError(f"{source}: the transformer does not match the run spec; fix the config or the weights:\n  "
                          + "\n  ".join(wrong))


def np_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
