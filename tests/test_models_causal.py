"""The causal forwards of docs/method.md §3 on a tiny Wan transformer: equivalences with known answers."""

import pytest
import torch

from raven.models import build_text_encoder, build_transformer, causal_forwards
from raven.models.attention import Split, dense_mask, split_visibility

CHUNKS = [3, 3, 3]


@pytest.fixture(scope="module")
def parts(repo_root):
    from raven.config import resolve_spec

    smoke_spec = resolve_spec(repo_root / "config", "smoke")
    torch.manual_seed(0)
    model = build_transformer(smoke_spec).eval()
    text = build_text_encoder(smoke_spec)(["red circle left fast on black", "blue square still on white"])
    return smoke_spec, model, text


def latents(spec, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, *spec.latent_shape, generator=generator)


def stream(forwards, noisy, t, clean, text, detach=True):
    """Streaming model calls: chunk j's noisy tokens with the cache built from clean chunks < j."""
    cache, outputs, start = forwards.new_cache(noisy.shape[0]), [], 0
    for j, size in enumerate(forwards.chunk_frames):
        part = slice(start, start + size)
        outputs.append(forwards.chunk(noisy[:, :, part], t[:, part], start, text, cache))
        if j < len(forwards.chunk_frames) - 1:
            history = clean[:, :, part].detach() if detach else clean[:, :, part]
            if detach:
                with torch.no_grad():
                    forwards.extend_cache(history, start, text, cache)
            else:
                forwards.extend_cache(history, start, text, cache)
        start += size
    return torch.cat(outputs, dim=2)


def test_interleaved_noisy_outputs_equal_streaming_with_the_same_clean_cache(parts):
    spec, model, text = parts
    forwards = causal_forwards(model, spec)
    noisy, clean = latents(spec, 1), latents(spec, 2)
    t = torch.full((2, spec.latent_frames), 833)
    with torch.no_grad():
        interleaved = forwards.interleaved(noisy, t, clean, text)
        streamed = stream(forwards, noisy, t, clean, text)
    assert (interleaved - streamed).abs().max() <= 1e-5


def test_streaming_equals_block_causal_over_the_same_tokens(parts):
    """The cache is refilled at t = 0; a block-causal forward over clean history at t = 0 plus the
    noisy last chunk sees exactly the same keys."""
    spec, model, text = parts
    forwards = causal_forwards(model, spec)
    x = latents(spec, 3)
    t = torch.zeros(2, spec.latent_frames, dtype=torch.long)
    t[:, 6:] = 625
    with torch.no_grad():
        full = forwards.block_causal(x, t, text)
        streamed = stream(forwards, x, t, x, text)
    assert (full - streamed).abs().max() <= 1e-5


def test_bidirectional_equals_the_plain_diffusers_forward(parts):
    spec, model, text = parts
    forwards = causal_forwards(model, spec)
    x = latents(spec, 4)
    t = torch.tensor([938, 250])
    with torch.no_grad():
        plain = model(x, t, text, return_dict=False)[0]
        ours = forwards.bidirectional(x, t, text)
    assert (plain - ours).abs().max() <= 1e-5


def test_interleaved_history_gets_gradient_and_detached_streaming_does_not(parts):
    spec, model, text = parts
    forwards = causal_forwards(model, spec)
    noisy = latents(spec, 5)
    t = torch.full((2, spec.latent_frames), 938)
    clean = latents(spec, 6).requires_grad_(True)
    # Gradient to the history's representations flows through the clean copies' keys/values; the
    # clean input itself is data, so measure the gradient on a scale applied to it.
    scale = torch.ones((), requires_grad=True)
    out = forwards.interleaved(noisy, t, clean * scale, text)
    out[:, :, 6:].pow(2).mean().backward()
    assert clean.grad[:, :, :6].abs().sum() > 0 and clean.grad[:, :, 6:].abs().sum() == 0
    assert scale.grad.abs() > 0

    clean.grad = None
    streamed = stream(forwards, noisy, t, clean, text, detach=True)
    streamed[:, :, 6:].pow(2).mean().backward()
    assert clean.grad is None


def test_the_interleaved_mask_is_exactly_spec_section_3():
    splits = [Split(0, 0, 3, "noisy"), Split(0, 0, 3, "clean"), Split(1, 3, 3, "noisy"), Split(1, 3, 3, "clean"),
              Split(2, 6, 3, "noisy")]
    visible = split_visibility(splits, sink=0, window=None)
    expected = torch.tensor([
        [1, 0, 0, 0, 0],  # N0 sees itself
        [0, 1, 0, 0, 0],  # C0 sees itself
        [0, 1, 1, 0, 0],  # N1 sees C0, N1
        [0, 1, 0, 1, 0],  # C1 sees C0, C1
        [0, 1, 0, 1, 1],  # N2 sees C0, C1, N2
    ], dtype=torch.bool)
    assert torch.equal(visible, expected)
    assert dense_mask(splits, tokens_per_frame=2, sink=0, window=None).shape == (30, 30)


@pytest.mark.parametrize(("sink", "window", "seen_by_chunk_5"), [(0, None, [0, 1, 2, 3, 4]), (1, 2, [0, 3, 4]),
                                                                  (0, 1, [4]), (2, 1, [0, 1, 4])])
def test_sink_window_eviction_keeps_exactly_the_chunks_of_spec(sink, window, seen_by_chunk_5):
    splits = [Split(j, j, 1, "clean") for j in range(6)]
    visible = split_visibility(splits, sink=sink, window=window)
    assert [j for j in range(5) if visible[5, j]] == seen_by_chunk_5

    from raven.models.causal import KVCache

    cache = KVCache(sink, window)
    for chunk in range(5):
        cache.append(0, chunk, torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
        cache.evict_for(chunk + 1)
    assert cache.chunks() == seen_by_chunk_5


def test_windowed_streaming_equals_windowed_interleaved(parts):
    spec, model, text = parts
    forwards = causal_forwards(model, spec, sink=0, window=1)
    noisy, clean = latents(spec, 7), latents(spec, 8)
    t = torch.full((2, spec.latent_frames), 625)
    with torch.no_grad():
        interleaved = forwards.interleaved(noisy, t, clean, text)
        streamed = stream(forwards, noisy, t, clean, text)
        unwindowed = causal_forwards(model, spec, window=None).interleaved(noisy, t, clean, text)
    assert (interleaved - streamed).abs().max() <= 1e-5
    assert (interleaved[:, :, 6:] - unwindowed[:, :, 6:]).abs().max() > 1e-4


def test_text_cross_attention_keys_are_computed_once_per_cache(parts):
    spec, model, text = parts
    forwards = causal_forwards(model, spec)
    cache = forwards.new_cache(2)
    x = latents(spec, 9)[:, :, :3]
    with torch.no_grad():
        forwards.chunk(x, torch.full((2, 3), 1000), 0, text, cache)
        first = cache.cross[0][0]
        forwards.chunk(x, torch.full((2, 3), 938), 0, text, cache)
    assert cache.cross[0][0] is first and len(cache.cross) == spec.transformer.num_layers


def test_compiled_flex_attention_with_the_gpu_paths_block_mask_equals_sdpa_with_the_dense_mask():
    """CUDA trains with compiled flex attention and a BlockMask built from split ranges per 128-token tile;
    the same kernel compiles and runs on the CPU. 100 tokens per frame: tiles straddle splits, and the
    last tile is padded."""
    from raven.models.attention import attend, flex_block_mask

    splits = [Split(0, 0, 3, "noisy"), Split(0, 0, 3, "clean"), Split(1, 3, 3, "noisy"), Split(1, 3, 3, "clean"),
              Split(2, 6, 3, "noisy")]
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, 1500, 2, 16, generator=generator) for _ in range(3))
    for sink, window in [(0, None), (1, 1)]:
        mask = flex_block_mask(splits, 100, sink, window, "cpu")
        full_tiles, partial_tiles = int(mask.full_kv_num_blocks.sum()), int(mask.kv_num_blocks.sum())
        assert full_tiles > 0 and partial_tiles > 0 and full_tiles + partial_tiles < 12 * 12
        flex = attend(query, key, value, mask, "flex")
        sdpa = attend(query, key, value, dense_mask(splits, 100, sink, window))
        assert (flex - sdpa).abs().max() <= 1e-5


def test_the_gpu_paths_block_mask_never_builds_an_l_by_l_tensor_at_paper_geometry():
    """RAVEN's interleaved sequence at 480x832, 21 latent frames (7 chunks of 3): L = 60,840 packed tokens
    (the dense mask would hold 3.7e9 entries). Every tensor made while building the mask is recorded."""
    from torch.nn.attention.flex_attention import BlockMask
    from torch.utils._python_dispatch import TorchDispatchMode

    from raven.models.attention import flex_block_mask

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor):
                    Largest.numel = max(Largest.numel, tensor.numel())
            return out

    splits = [Split(j // 2, 3 * (j // 2), 3, "noisy" if j % 2 == 0 else "clean") for j in range(13)]
    length = 13 * 3 * 30 * 52
    assert length == 60840
    with Largest():
        mask = flex_block_mask(splits, 30 * 52, sink=0, window=None, device="meta")
    assert isinstance(mask, BlockMask) and mask.seq_lengths == (length, length)
    assert mask.kv_num_blocks.device.type == "meta" and mask.full_kv_indices.device.type == "meta"
    assert 0 < Largest.numel <= 4 * length
