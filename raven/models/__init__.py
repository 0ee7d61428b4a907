"""Models: the Wan transformer and its causal forwards, the UMT5 text encoder, the codec, checkpoints, LoRA."""

from raven.models.causal import CausalWan, KVCache, causal_forwards
from raven.models.checkpoints import load_transformer
from raven.models.codec import build_codec
from raven.models.text import build_text_encoder
from raven.models.transformer import build_transformer, check_architecture

__all__ = ["CausalWan", "KVCache", "build_codec", "build_text_encoder", "build_transformer", "causal_forwards",
           "check_architecture", "load_transformer"]
