"""Which key each query may see in a packed causal sequence, as a dense mask (CPU: SDPA) or a flex-attention
BlockMask (CUDA: the compiled flex kernel), and the attention call itself (docs/method.md §3).

A packed sequence is a run of *splits*, each a run of latent frames of one chunk with a kind (`noisy` or
`clean`). A query in split i sees a key in split j iff j comes no later than i in packed order, j is not
another split's noisy tokens, and chunk(j) survives the sink/window rule seen from chunk(i).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

SplitKind = Literal["noisy", "clean"]


@dataclass(frozen=True)
class Split:
    """A run of latent frames [start, start + frames) of chunk `chunk`, packed as `kind` tokens."""

    chunk: int
    start: int
    frames: int
    kind: SplitKind


def keeps_history(query_chunk: int, key_chunk: int, sink: int, window: int | None) -> bool:
    """Sink/window (in chunks): chunk `key_chunk` < `query_chunk` stays visible to `query_chunk`."""
    return key_chunk < sink or window is None or key_chunk >= query_chunk - window


def split_visibility(splits: Sequence[Split], sink: int, window: int | None) -> torch.Tensor:
    """[S, S] boolean: may a query of split i see a key of split j (docs/method.md §3)."""
    visible = torch.zeros(len(splits), len(splits), dtype=torch.bool)
    for i, query in enumerate(splits):
        for j, key in enumerate(splits):
            in_order = j <= i
            foreign_noise = key.kind == "noisy" and j != i
            same_chunk = key.chunk == query.chunk
            history_ok = same_chunk or keeps_history(query.chunk, key.chunk, sink, window)
            visible[i, j] = in_order and not foreign_noise and history_ok
    return visible


def token_split_ids(splits: Sequence[Split], tokens_per_frame: int) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(splits)), torch.tensor([s.frames * tokens_per_frame for s in splits]))


def dense_mask(splits: Sequence[Split], tokens_per_frame: int, sink: int, window: int | None) -> torch.Tensor:
    """[L, L] boolean token mask for SDPA (CPU path)."""
    ids = token_split_ids(splits, tokens_per_frame)
    return split_visibility(splits, sink, window)[ids[:, None], ids[None, :]]


FLEX_BLOCK = 128  # flex attention's tile (queries and keys)


def flex_block_mask(splits: Sequence[Split], tokens_per_frame: int, sink: int, window: int | None, device):
    """The same rule as a flex-attention BlockMask (CUDA path), built from split ranges per 128-token tile:
    a tile pair is full, empty or partial (then `mask_mod` decides per token); nothing L×L is materialised."""
    from torch.nn.attention.flex_attention import BlockMask

    ids = token_split_ids(splits, tokens_per_frame)
    length = ids.numel()
    tiles = -(-length // FLEX_BLOCK)
    bounds = torch.arange(tiles) * FLEX_BLOCK
    first, last = ids[bounds], ids[torch.clamp(bounds + FLEX_BLOCK, max=length) - 1]
    visible = split_visibility(splits, sink, window)
    # visible pairs in each tile pair's rectangle of splits [first, last] x [first, last], by 2-D prefix sums
    counts = torch.zeros(len(splits) + 1, len(splits) + 1, dtype=torch.long)
    counts[1:, 1:] = visible.long().cumsum(0).cumsum(1)
    q0, q1, k0, k1 = first[:, None], last[:, None] + 1, first[None, :], last[None, :] + 1
    seen = counts[q1, k1] - counts[q0, k1] - counts[q1, k0] + counts[q0, k0]
    padded = torch.zeros(tiles, dtype=torch.bool)
    padded[-1] = length % FLEX_BLOCK != 0
    full = (seen == (q1 - q0) * (k1 - k0)) & ~padded[:, None] & ~padded[None, :]
    partial = (seen > 0) & ~full
    ids = torch.cat([ids, ids[-1].repeat(tiles * FLEX_BLOCK - length)]).to(device)  # padding: any valid split
    visible = visible.to(device)

    def mask_mod(batch, head, query, key):
        return visible[ids[query], ids[key]]

    def blocks(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)  # chosen tiles first, in order
        return chosen.sum(1).to(torch.int32)[None, None].to(device), order.to(torch.int32)[None, None].to(device)

    return BlockMask.from_kv_blocks(*blocks(partial), *blocks(full), BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod,
                                    seq_lengths=(length, length))


@functools.cache
def compiled_flex_attention():
    """flex attention compiled into a fused kernel (uncompiled, it materialises the L×L scores)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def attend(query, key, value, mask=None, kernel="sdpa") -> torch.Tensor:
    """[B, L, H, D] layout in and out; `kernel` flex takes a BlockMask, sdpa a dense boolean mask or None."""
    query, key, value = (x.transpose(1, 2) for x in (query, key, value))
    if kernel == "flex" and mask is not None:
        out = compiled_flex_attention()(query, key, value, block_mask=mask)
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return out.transpose(1, 2)
