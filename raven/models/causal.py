"""Causality on the diffusers Wan transformer (docs/method.md §3), without forking it.

One description drives every mode: a packed sequence of *splits*, each a run of latent frames of one
chunk with a kind (`noisy` or `clean`), its own per-frame times and absolute RoPE frame positions.
A query in split i sees a key in split j iff j comes no later than i in packed order, j is not another
split's noisy tokens, and chunk(j) survives the sink/window rule seen from chunk(i):

- bidirectional: one split holding every frame;
- block-causal: one clean split per chunk of the same tokens;
- RAVEN interleaved: `[N0 C0 N1 C1 … N(K−1)]`, N_j and C_j sharing RoPE positions;
- streaming: the current chunk's tokens attend to [KV cache ; chunk]; the cache is refilled by a t = 0
  pass over the clean chunk and evicted by sink/window; text cross-attention keys/values cached once.

The rule as masks, and the attention kernels, are in `raven.models.attention`. The custom processors replace
`attn1`/`attn2` of every block; outside a `CausalWan` call they behave
exactly as diffusers' own processor (full attention), so `model(...)` still works.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MethodType
from typing import Literal

import torch
from diffusers import WanTransformer3DModel
from torch.distributed.fsdp import register_fsdp_forward_method

from raven.config import RunSpec
from raven.config.spec import chunk_layout, chunk_starts
from raven.models.attention import Split, SplitKind, attend, dense_mask, flex_block_mask, keeps_history

@dataclass
class KVCache:
    """Per layer, the clean history's post-RoPE keys/values per chunk [B, L_chunk, H, D]; cross-attention K/V."""

    sink: int
    window: int | None
    entries: dict[int, list[tuple[int, torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    cross_text: torch.Tensor | None = None

    def chunks(self) -> list[int]:
        return [chunk for chunk, _, _ in self.entries.get(0, [])]

    def history(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        entries = self.entries.get(layer)
        if not entries:
            return None
        return torch.cat([k for _, k, _ in entries], dim=1), torch.cat([v for _, _, v in entries], dim=1)

    def append(self, layer: int, chunk: int, key: torch.Tensor, value: torch.Tensor) -> None:
        self.entries.setdefault(layer, []).append((chunk, key, value))

    def view(self, layer: int) -> KVCache:
        """What layer `layer` sees now (its history and text keys/values), apart from later appends/evictions."""
        entries = {layer: list(self.entries[layer])} if layer in self.entries else {}
        cross = {layer: self.cross[layer]} if layer in self.cross else {}
        return KVCache(self.sink, self.window, entries, cross)

    def evict_for(self, next_chunk: int) -> None:
        """Keep what chunk `next_chunk` may see: the first `sink` chunks and the last `window` chunks."""
        for layer, entries in self.entries.items():
            self.entries[layer] = [e for e in entries if keeps_history(next_chunk, e[0], self.sink, self.window)]


@dataclass
class AttentionContext:
    """What the processors do in the current call; set by `CausalWan` for the duration of one forward."""

    mode: Literal["full", "masked", "cached"] = "full"
    mask: object = None
    kernel: Literal["sdpa", "flex"] = "sdpa"
    cache: KVCache | None = None
    record_chunk: int | None = None

    def replay(self, layer: int) -> dict:
        """Settings under which a recomputation of block `layer` (gradient checkpointing, in backward)
        attends exactly as the block does now: same mode and mask, the cache as the layer sees it now, and
        nothing recorded a second time."""
        cache = None if self.cache is None else self.cache.view(layer)
        return {"mode": self.mode, "mask": self.mask, "kernel": self.kernel, "cache": cache, "record_chunk": None}

    @contextmanager
    def use(self, **settings) -> Iterator[None]:
        previous = {name: getattr(self, name) for name in settings}
        for name, value in settings.items():
            setattr(self, name, value)
        try:
            yield
        finally:
            for name, value in previous.items():
                setattr(self, name, value)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved-pair rotary embedding (as diffusers' WanAttnProcessor)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class CausalSelfAttention:
    """Self-attention of one block under the shared `AttentionContext`."""

    def __init__(self, context: AttentionContext, layer: int):
        self.context, self.layer = context, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query, key = apply_rotary(query, *rotary_emb), apply_rotary(key, *rotary_emb)
        context = self.context
        if context.mode == "cached":
            out = self.cached(query, key, value)
        elif context.mode == "masked":
            out = attend(query, key, value, context.mask, context.kernel)
        else:
            out = attend(query, key, value)
        out = out.flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))

    def cached(self, query, key, value) -> torch.Tensor:
        cache = self.context.cache
        history = cache.history(self.layer)
        if self.context.record_chunk is not None:
            cache.append(self.layer, self.context.record_chunk, key, value)
        if history is not None:
            key, value = torch.cat([history[0], key], dim=1), torch.cat([history[1], value], dim=1)
        return attend(query, key, value)


class CachedCrossAttention:
    """Text cross-attention; in streaming the text keys/values are computed once per cache."""

    def __init__(self, context: AttentionContext, layer: int):
        self.context, self.layer = context, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        cache = self.context.cache if self.context.mode == "cached" else None
        if cache is not None and self.layer in cache.cross:
            key, value = cache.cross[self.layer]
        else:
            key = attn.norm_k(attn.to_k(encoder_hidden_states)).unflatten(2, (attn.heads, -1))
            value = attn.to_v(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            if cache is not None:
                cache.cross[self.layer] = (key, value)
        out = attend(query, key, value).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))


def install_processors(model: WanTransformer3DModel) -> AttentionContext:
    """Install the causal processors once per model; return the model's shared context."""
    context = getattr(model, "_raven_attention", None)
    if context is None:
        if any(block.attn2.add_k_proj is not None for block in model.blocks):
            raise ValueError("causal Wan supports text-to-video transformers only (this one has image projections)")
        context = AttentionContext()
        for layer, block in enumerate(model.blocks):
            block.attn1.set_processor(CausalSelfAttention(context, layer))
            block.attn2.set_processor(CachedCrossAttention(context, layer))
        model._raven_attention = context
        model.causal_forward = MethodType(causal_forward, model)
        model.fsdp_forward_methods = ("causal_forward",)
        register_fsdp_forward_method(model, "causal_forward")  # a no-op until the model is sharded
    return context


def causal_forward(model: WanTransformer3DModel, function, *args):
    """`function(*args)` as a forward of `model`: FSDP2 (`World.prepare` registers this method) unshards the
    root's own parameters (patch embedding, condition embedder, output head) around it."""
    return function(*args)


def rope_for_frames(rope, start: int, frames: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' Wan RoPE for latent frames [start, start + frames) at absolute positions: [1, L, 1, D]."""
    sizes = [rope.t_dim, rope.h_dim, rope.w_dim]
    tables = []
    for freqs in (rope.freqs_cos, rope.freqs_sin):
        f_part, h_part, w_part = freqs.split(sizes, dim=1)
        grid = (frames, height, width)
        table = torch.cat([
            f_part[start : start + frames].view(frames, 1, 1, -1).expand(*grid, -1),
            h_part[:height].view(1, height, 1, -1).expand(*grid, -1),
            w_part[:width].view(1, 1, width, -1).expand(*grid, -1),
        ], dim=-1)
        tables.append(table.reshape(1, frames * height * width, 1, -1))
    if start + frames > rope.max_seq_len:
        raise ValueError(f"latent frame {start + frames} is past the transformer's rope_max_seq_len {rope.max_seq_len}")
    return tables[0], tables[1]


@dataclass(frozen=True)
class Piece:
    """One split's input: latents [B, C, f, h, w] and integer times per frame [B, f]."""

    split: Split
    latents: torch.Tensor
    times: torch.Tensor


class CausalWan:
    """The causal forwards of one Wan transformer (docs/method.md §3). Times are per latent frame [B, F];
    outputs are velocities."""

    def __init__(self, model: WanTransformer3DModel, chunk_frames: Sequence[int], sink: int = 0,
                 window: int | None = None, latent_shape: tuple[int, int, int, int] | None = None):
        self.model, self.chunk_frames, self.sink, self.window = model, list(chunk_frames), sink, window
        self.latent_shape = latent_shape  # (C, F, h, w) of one training-length video, for generation
        self.context = install_processors(model)
        self.patch = tuple(model.config.patch_size)
        if self.patch[0] != 1:
            raise ValueError(f"causal Wan needs temporal patch 1 (frames are chunk units), got patch {self.patch}")
        self._flex_masks: dict = {}

    # --- one packed forward -------------------------------------------------------------------
    def run(self, pieces: Sequence[Piece], text: torch.Tensor) -> list[torch.Tensor]:
        """Forward the packed pieces under the current context; return each piece's output latents."""
        return self.model.causal_forward(self._run, pieces, text)

    def _run(self, pieces: Sequence[Piece], text: torch.Tensor) -> list[torch.Tensor]:
        model = self.model
        first = pieces[0].latents
        _, _, _, height, width = first.shape
        grid_h, grid_w = height // self.patch[1], width // self.patch[2]
        per_frame = grid_h * grid_w
        dtype = model.patch_embedding.weight.dtype  # the compute dtype (bf16 under a MixedPrecisionPolicy)
        tokens = torch.cat([model.patch_embedding(p.latents.to(dtype)).flatten(2).transpose(1, 2) for p in pieces],
                           dim=1)
        rope = [rope_for_frames(model.rope, p.split.start, p.split.frames, grid_h, grid_w) for p in pieces]
        rotary = (torch.cat([r[0] for r in rope], dim=1).to(first.device), torch.cat([r[1] for r in rope], dim=1).to(first.device))
        times = torch.cat([p.times.repeat_interleave(per_frame, dim=1) for p in pieces], dim=1)
        length = tokens.shape[1]
        text = text.to(tokens.device, dtype)
        temb, projection, text_states, _ = model.condition_embedder(times.flatten(), text, None, timestep_seq_len=length)
        projection = projection.unflatten(2, (6, -1))
        hidden = tokens.contiguous()
        for layer, block in enumerate(model.blocks):
            if torch.is_grad_enabled() and model.gradient_checkpointing:
                hidden = model._gradient_checkpointing_func(self.replayable(block, layer), hidden, text_states,
                                                            projection, rotary)
            else:
                hidden = block(hidden, text_states, projection, rotary)
        shift, scale = (model.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
        hidden = (model.norm_out(hidden.float()) * (1 + scale.squeeze(2)) + shift.squeeze(2)).type_as(hidden)
        hidden = model.proj_out(hidden)
        outputs, offset = [], 0
        for piece in pieces:
            count = piece.split.frames * per_frame
            outputs.append(self.unpatchify(hidden[:, offset : offset + count], piece.split.frames, grid_h,
                                           grid_w).type_as(first))
            offset += count
        return outputs

    def replayable(self, block: torch.nn.Module, layer: int):
        """`block` for checkpointing: the first call runs in the live context; recomputations re-enter the
        context as it was at that call (the mask, the cache before this call's appends)."""
        replay, calls = self.context.replay(layer), []

        def run_block(*args):
            if not calls:
                calls.append(layer)
                return block(*args)
            with self.context.use(**replay):
                return block(*args)

        return run_block

    def unpatchify(self, hidden: torch.Tensor, frames: int, grid_h: int, grid_w: int) -> torch.Tensor:
        _, p_h, p_w = self.patch
        batch = hidden.shape[0]
        hidden = hidden.reshape(batch, frames, grid_h, grid_w, 1, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return hidden.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def masked(self, pieces: Sequence[Piece], text: torch.Tensor) -> list[torch.Tensor]:
        splits = [p.split for p in pieces]
        _, _, _, height, width = pieces[0].latents.shape
        per_frame = (height // self.patch[1]) * (width // self.patch[2])
        device = pieces[0].latents.device
        if device.type == "cuda":
            key = (tuple(splits), per_frame)
            if key not in self._flex_masks:
                self._flex_masks[key] = flex_block_mask(splits, per_frame, self.sink, self.window, device)
            settings = {"mode": "masked", "mask": self._flex_masks[key], "kernel": "flex"}
        else:
            settings = {"mode": "masked", "mask": dense_mask(splits, per_frame, self.sink, self.window).to(device),
                        "kernel": "sdpa"}
        with self.context.use(**settings):
            return self.run(pieces, text)

    # --- the modes ----------------------------------------------------------------------------
    def chunk_pieces(self, x: torch.Tensor, t: torch.Tensor, kind: SplitKind) -> list[Piece]:
        starts = chunk_starts(self.layout(x.shape[2]))
        return [Piece(Split(j, start, size, kind), x[:, :, start : start + size], t[:, start : start + size])
                for j, (start, size) in enumerate(zip(starts, self.layout(x.shape[2])))]

    def layout(self, frames: int) -> list[int]:
        """Chunk sizes covering `frames` latent frames (longer videos continue with the last chunk size)."""
        return chunk_layout(self.chunk_frames, frames=frames)

    def bidirectional(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        t = t.view(-1, 1).expand(-1, x.shape[2]) if t.ndim == 1 else t
        with self.context.use(mode="full"):
            return self.run([Piece(Split(0, 0, x.shape[2], "clean"), x, t)], text)[0]

    def block_causal(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.masked(self.chunk_pieces(x, t, "clean"), text), dim=2)

    def interleaved(self, noisy: torch.Tensor, t: torch.Tensor, clean: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """RAVEN's `[N0 C0 … N(K−1)]`; clean copies at t = 0 share RoPE positions with their noisy chunk."""
        noisy_pieces = self.chunk_pieces(noisy, t, "noisy")
        clean_pieces = self.chunk_pieces(clean, torch.zeros_like(t), "clean")
        packed = []
        for j, piece in enumerate(noisy_pieces):
            packed.append(piece)
            if j < len(noisy_pieces) - 1:
                packed.append(clean_pieces[j])
        outputs = self.masked(packed, text)
        return torch.cat(outputs[0::2], dim=2)

    @property
    def device(self) -> torch.device:
        """Where the model computes (a sharded model's local shards live there too)."""
        return next(self.model.parameters()).device

    def new_cache(self, batch: int) -> KVCache:
        return KVCache(self.sink, self.window)

    def chunk_index(self, start_frame: int) -> int:
        starts = chunk_starts(self.layout(start_frame + 1))
        return len(starts) - 1

    def chunk(self, x: torch.Tensor, t: torch.Tensor, start_frame: int, text: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One chunk's forward attending to [cache ; chunk] (streaming inference)."""
        piece = Piece(Split(self.chunk_index(start_frame), start_frame, x.shape[2], "noisy"), x, t)
        with self.context.use(mode="cached", cache=cache, record_chunk=None):
            return self.run([piece], text)[0]

    def extend_cache(self, clean: torch.Tensor, start_frame: int, text: torch.Tensor, cache: KVCache) -> None:
        """Append the clean chunk's keys/values from a t = 0 pass, then evict for the next chunk."""
        chunk = self.chunk_index(start_frame)
        piece = Piece(Split(chunk, start_frame, clean.shape[2], "clean"), clean,
                      torch.zeros(clean.shape[0], clean.shape[2], dtype=torch.long, device=clean.device))
        with self.context.use(mode="cached", cache=cache, record_chunk=chunk):
            self.run([piece], text)
        cache.evict_for(chunk + 1)


def causal_forwards(model: WanTransformer3DModel, spec: RunSpec, sink: int | None = None,
                    window: int | None = None) -> CausalWan:
    """The causal forwards of `model` with the spec's chunking; `sink`/`window` override spec.chunks (baselines)."""
    chunks = spec.chunks
    return CausalWan(model, spec.chunk_frames, chunks.sink if sink is None else sink,
                     chunks.window if window is None else window, spec.latent_shape)
