"""Gradient checkpointing re-enters the causal attention context: the recomputation in backward sees the
same mask and KV cache as the forward, so gradients equal the unchecked run (issue 14)."""

import pytest
import torch

from raven.models import build_text_encoder, build_transformer, causal_forwards


@pytest.fixture(scope="module")
def parts(repo_root):
    from raven.config import resolve_spec

    spec = resolve_spec(repo_root / "config", "smoke")
    torch.manual_seed(0)
    model = build_transformer(spec)
    text = build_text_encoder(spec)(["red circle left fast on black", "blue square still on white"])
    return spec, model, text


def latents(spec, seed):
    return torch.randn(2, *spec.latent_shape, generator=torch.Generator().manual_seed(seed))


def interleaved_loss(forwards, spec, text):
    t = torch.full((2, spec.latent_frames), 833)
    t[:, 3:] = 500
    return forwards.interleaved(latents(spec, 1), t, latents(spec, 2), text).pow(2).mean()


def cached_loss(forwards, spec, text):
    """Streaming with gradient through the cache: every chunk's cached clean pass and noisy forward."""
    clean, noisy = latents(spec, 3), latents(spec, 4)
    cache, loss, start = forwards.new_cache(2), 0.0, 0
    for j, size in enumerate(forwards.chunk_frames):
        part = slice(start, start + size)
        loss = loss + forwards.chunk(noisy[:, :, part], torch.full((2, size), 625), start, text, cache).pow(2).mean()
        if j < len(forwards.chunk_frames) - 1:
            forwards.extend_cache(clean[:, :, part], start, text, cache)
        start += size
    return loss


def gradients(model, loss_fn, spec, text, checkpointing: bool, window=None):
    if checkpointing:
        model.enable_gradient_checkpointing()
    else:
        model.disable_gradient_checkpointing()
    model.zero_grad(set_to_none=True)
    forwards = causal_forwards(model, spec, sink=1 if window else None, window=window)
    loss = loss_fn(forwards, spec, text)
    loss.backward()
    model.disable_gradient_checkpointing()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_fn", [interleaved_loss, cached_loss], ids=["interleaved", "cached"])
@pytest.mark.parametrize("window", [None, 1])
def test_checkpointed_gradients_equal_the_unchecked_run(parts, loss_fn, window):
    spec, model, text = parts
    plain_loss, plain = gradients(model, loss_fn, spec, text, checkpointing=False, window=window)
    loss, checked = gradients(model, loss_fn, spec, text, checkpointing=True, window=window)
    assert torch.equal(loss, plain_loss)
    assert plain.keys() == checked.keys() and len(plain) > 10
    for name, grad in plain.items():
        assert (grad - checked[name]).abs().max() <= 1e-5, name
