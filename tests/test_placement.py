"""Placement (issue 14): every stage's models, built for a device other than the CPU (`meta`), land there with
every parameter, buffer and cached tensor, in the spec's precision where they are frozen; so a forgotten
`.to(device)` fails here on a CPU-only machine instead of on the cluster."""

from __future__ import annotations

from pathlib import Path

import torch

from raven.config import resolve_spec
from raven.models import build_transformer, causal_forwards
from raven.training.base import ModelParts
from raven.training.distributed import World

META = torch.device("meta")


def tensors_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def assert_placed(module: torch.nn.Module, dtype: torch.dtype | None = None) -> None:
    tensors = tensors_of(module)
    assert tensors
    wrong = [name for name, tensor in tensors.items() if tensor.device != META]
    assert not wrong, wrong[:5]
    if dtype is not None:
        floats = [t for t in module.parameters() if t.is_floating_point()]
        assert floats and all(t.dtype == dtype for t in floats)


def paper_like_spec(repo_root: Path, folder: Path):
    """Smoke dims with the paper's components: a (tiny, random) Wan VAE folder, a Wan teacher folder and a
    bidirectional base for the KL reference, in bf16."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                     temperal_downsample=[False, True, True]).save_pretrained(folder / "vae")
    spec = resolve_spec(repo_root / "config", "smoke", overrides={
        "precision": "bf16", "video": {"height": 32, "width": 32, "frames": 9},
        "codec": {"kind": "wan_vae", "path": str(folder / "vae"), "spatial_factor": 8, "temporal_factor": 4,
                  "latent_channels": 4},
        "weights": {"teacher": str(folder / "teacher"), "base": str(folder / "base")},
        "stages": {"dmd": {"teacher": "wan"}, "cmgrpo": {"kl_reference": "base", "kl_beta": 0.01}}})
    for name in ("teacher", "base"):
        build_transformer(spec).save_pretrained(folder / name)
    return spec


def test_every_stages_models_land_on_the_device_in_the_spec_precision(repo_root, tmp_path):
    from raven.config import stage_options
    from raven.training.cmgrpo import CMGRPOOptions, build_policy, build_reference
    from raven.training.dmd import DMDInputs, DMDOptions, dmd_teacher

    spec = paper_like_spec(repo_root, tmp_path)
    world = World(device=META, precision="bf16")
    parts = ModelParts.build(spec).place(world)
    assert_placed(parts.encode_text.model, torch.bfloat16)  # UMT5
    assert_placed(parts.codec.vae, torch.bfloat16)  # Wan VAE
    # trained models: fp32 master weights on the device (FSDP2 computes them in bf16 when sharded)
    student, critic = world.prepare(parts.load(tmp_path / "base")), world.prepare(parts.load(tmp_path / "base"))
    assert_placed(student, torch.float32)
    assert_placed(critic, torch.float32)
    cmgrpo = stage_options(spec, "cmgrpo", CMGRPOOptions)
    policy = world.prepare(build_policy(parts, tmp_path / "base", cmgrpo, spec.seed))
    assert_placed(policy, torch.float32)
    # frozen models: the 14B teacher's stand-in and CM-GRPO's KL reference, in bf16
    inputs = DMDInputs(spec, stage_options(spec, "dmd", DMDOptions), tmp_path / "base", tmp_path / "base",
                       tmp_path / "prompts.txt", tmp_path / "out", None)
    teacher = dmd_teacher(inputs, parts, ["red circle left fast on black"], world)
    assert_placed(teacher.transformer, torch.bfloat16)
    assert_placed(build_reference(spec, parts, stage_options(spec, "cmgrpo", CMGRPOOptions), world), torch.bfloat16)


def test_causal_forwards_keep_masks_activations_and_the_kv_cache_on_the_device(smoke_spec):
    """The interleaved (masked) forward and streaming with its KV cache, run on `meta` in bf16."""
    world = World(device=META, precision="bf16")
    model = world.place(build_transformer(smoke_spec))
    assert model.rope.freqs_cos.dtype == torch.float32  # RoPE tables stay fp32 under bf16 parameters
    forwards = causal_forwards(model, smoke_spec)
    latents = torch.zeros(1, *smoke_spec.latent_shape, device=META)
    t = torch.zeros(1, smoke_spec.latent_frames, dtype=torch.long, device=META)
    text = torch.zeros(1, 4, smoke_spec.text_encoder.d_model, device=META)
    with torch.no_grad():
        out = forwards.interleaved(latents, t, latents, text)
        cache, size = forwards.new_cache(1), forwards.chunk_frames[0]
        chunk = forwards.chunk(latents[:, :, :size], t[:, :size], 0, text, cache)
        forwards.extend_cache(latents[:, :, :size], 0, text, cache)
    assert out.device == META and out.shape == latents.shape and out.dtype == torch.float32
    assert chunk.device == META
    cached = [tensor for entries in cache.entries.values() for _, key, value in entries for tensor in (key, value)]
    cached += [tensor for pair in cache.cross.values() for tensor in pair]
    assert cached and all(tensor.device == META and tensor.dtype == torch.bfloat16 for tensor in cached)
