"""The frozen UMT5 text encoder: `encode(prompts) -> [B, L, D]`, zero past each prompt's length (as Wan).

`umt5` loads a local transformers UMT5 encoder folder and its tokenizer. `toy` builds a small
random-initialised UMT5 (fixed seed) with a word-level tokenizer over the toy world's vocabulary; it is
saved and loaded through the same transformers code, so the real loading path is what the toy scales use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from raven.config import ConfigError, RunSpec
from raven.io import keep_umask

TOY_SEED = 0
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


class TextEncoder:
    """Tokenizer + frozen UMT5 encoder; outputs float32 [B, max_length, D]."""

    def __init__(self, tokenizer, model: UMT5EncoderModel, max_length: int):
        self.tokenizer, self.model, self.max_length = tokenizer, model.eval().requires_grad_(False), max_length

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        device = next(self.model.parameters()).device
        mask = tokens.attention_mask.to(device)
        hidden = self.model(input_ids=tokens.input_ids.to(device), attention_mask=mask).last_hidden_state
        return (hidden * mask.unsqueeze(-1)).float()


def toy_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from raven.world.grammar import vocabulary

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + sorted(set(vocabulary())))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def toy_text_model(spec: RunSpec, vocab_size: int) -> UMT5EncoderModel:
    options = spec.text_encoder
    config = UMT5Config(
        vocab_size=vocab_size, d_model=options.d_model, d_kv=options.d_model // options.num_heads, d_ff=options.d_ff,
        num_layers=options.num_layers, num_heads=options.num_heads, feed_forward_proj="gated-gelu",
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TOY_SEED)
        model = UMT5EncoderModel(config)
    if options.neighbour_bias:
        attend_to_neighbours(model, options.neighbour_bias)
    return model


@torch.no_grad()
def attend_to_neighbours(model: UMT5EncoderModel, bias: float) -> None:
    """Add `bias` to each layer's relative-attention logits of the previous token (first half of the heads) and
    of the next token (second half): text_encoder.neighbour_bias."""
    heads = model.config.num_heads
    for block in model.encoder.block:
        attention = block.layer[0].SelfAttention
        # relative position = key position - query position, in transformers' buckets
        previous, following = attention._relative_position_bucket(torch.tensor([-1, 1])).tolist()
        table = attention.relative_attention_bias.weight  # [buckets, heads]
        table[previous, : heads // 2] += bias
        table[following, heads // 2 :] += bias


def save_toy_text_encoder(spec: RunSpec, folder: str | Path) -> Path:
    """Write the toy encoder as a transformers folder (model + tokenizer), the format `umt5` loads."""
    folder = Path(folder)
    tokenizer = toy_tokenizer()
    toy_text_model(spec, len(tokenizer)).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return keep_umask(folder)


def load_umt5(model_path: str | Path, tokenizer_path: str | Path | None, max_length: int) -> TextEncoder:
    model_path = Path(model_path)
    tokenizer_path = Path(tokenizer_path or model_path)
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(
            f"text_encoder.path = {model_path}: no config.json there; expected a transformers UMT5 encoder folder "
            "(e.g. the text_encoder/ folder of Wan2.1-T2V-1.3B-Diffusers, copied to local disk)")
    if not tokenizer_path.is_dir():
        raise FileNotFoundError(
            f"text_encoder.tokenizer_path = {tokenizer_path}: not a folder; expected the tokenizer/ folder of the "
            "Wan2.1 Diffusers release")
    from raven.models.checkpoints import check_weight_files

    check_weight_files(model_path)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)
    model = UMT5EncoderModel.from_pretrained(model_path, local_files_only=True, torch_dtype=torch.float32)
    return TextEncoder(tokenizer, model, max_length)


def build_text_encoder(spec: RunSpec) -> TextEncoder:
    options = spec.text_encoder
    if options.kind == "umt5":
        return load_umt5(options.path, options.tokenizer_path, options.max_length)
    tokenizer = toy_tokenizer()
    return TextEncoder(tokenizer, toy_text_model(spec, len(tokenizer)), options.max_length)


def text_width(spec: RunSpec) -> int:
    """D of the encoder's output (the transformer's `text_dim`), read without loading weights."""
    options = spec.text_encoder
    if options.kind == "toy":
        return options.d_model
    config_file = Path(options.path) / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"text_encoder.path = {options.path}: no config.json; expected a local UMT5 encoder folder")
    return int(json.loads(config_file.read_text())["d_model"])
