"""`raven data`: training / held-out prompt files and clip shards (options under `stages.data`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prompt files and clip shards")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    prompts = commands.add_parser("prompts", help="write training and held-out prompt files")
    prompts.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    prompts.add_argument("--out-train", required=True, help="training prompt file to write")
    prompts.add_argument("--out-heldout", required=True, help="held-out prompt file to write (evaluation)")
    prompts.add_argument("--summary", help="summary JSON (default: beside --out-train, prompts_summary.json)")
    prompts.set_defaults(handler=run_prompts)
    clips = commands.add_parser("clips", help="write clip shards (toy world or OpenVid) into --out")
    clips.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    clips.add_argument("--prompts", help="training prompt file (toy clips)")
    clips.add_argument("--out", required=True, help="folder for shard-*.parquet and summary.json")
    clips.set_defaults(handler=run_clips)
    latents = commands.add_parser(
        "clip-latents", help="encode the clip shards once into latent shards that training streams",
        description="Each rank encodes every world_size-th clip shard with the spec's codec (the VAE on the GPU in "
                    "bf16 when there is one) into <clips>/latents/latents-*.safetensors; rank 0 writes index.json "
                    "last. Trainers read the drawn clips' latents per batch (raven.data.latents).")
    latents.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec): its codec and video")
    latents.add_argument("--clips", required=True, help="clip shard folder (raven data clips); latents go to <clips>/latents")
    latents.set_defaults(handler=run_clip_latents)
    cache = commands.add_parser(
        "text-cache", help="encode every prompt once into a memory-mapped cache (safetensors shards + index.json)",
        description="Encodes the prompt files, the clips' captions, the empty prompt and the negative prompts with "
                    "the spec's text encoder (on the GPU in bf16 when there is one), each rank its share; rank 0 "
                    "writes index.json last. Trainers read embeddings per batch from it (raven.data.text_cache).")
    cache.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec): its text_encoder")
    cache.add_argument("--prompts", nargs="*", default=[], help="prompt files, one prompt per line")
    cache.add_argument("--clips", help="clip shard folder whose captions are cached too (real-clip rows)")
    cache.add_argument("--out", required=True, help="cache folder (index.json is the Snakemake target)")
    cache.set_defaults(handler=run_text_cache)


def _options(spec_path: str):
    from raven.config import read_spec, stage_options
    from raven.data.options import DataOptions

    spec = read_spec(spec_path)
    return spec, stage_options(spec, "data", DataOptions)


def _fail(error: ValueError) -> int:
    import sys

    print(f"raven data: error: {error}", file=sys.stderr)
    return 2


def run_prompts(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raven.data.prompts import write_prompt_file
    from raven.data.stage import build_prompts
    from raven.io import atomic_write_json

    _, options = _options(args.spec)
    try:
        train, heldout, summary = build_prompts(options)
    except ValueError as error:
        return _fail(error)
    write_prompt_file(args.out_train, train)
    write_prompt_file(args.out_heldout, heldout)
    summary_path = args.summary or Path(args.out_train).parent / "prompts_summary.json"
    atomic_write_json(summary_path, {**summary, "train": len(train), "heldout": len(heldout), "seed": options.seed})
    return 0


def run_clips(args: argparse.Namespace) -> int:
    """Each rank of the (launched) job writes its share of the shards; rank 0 merges the summary last."""
    from pathlib import Path

    from raven.data.stage import build_clips, clips_summary
    from raven.io import atomic_write_json
    from raven.training.distributed import close_world, init_world

    spec, options = _options(args.spec)
    out = Path(args.out)
    world = init_world()
    try:
        build_clips(spec, options, Path(args.prompts) if args.prompts else None, out, world.rank, world.world_size)
        world.barrier()
        if world.is_main:
            atomic_write_json(out / "summary.json", clips_summary(out, world.world_size))
    except ValueError as error:
        return _fail(error)
    finally:
        close_world(world)
    return 0


def cached_prompts(prompt_files: list[str], clips: str | None) -> list[str]:
    """What trainers look up: the prompts, the clips' captions, the empty prompt (CFG dropout, CM-GRPO's
    reference) and every negative prompt a teacher or rollout may use."""
    from raven.data.prompts import read_prompt_file
    from raven.data.shards import ClipReader
    from raven.training.teachers import NEGATIVE_PROMPTS

    prompts = [prompt for path in prompt_files for prompt in read_prompt_file(path)]
    captions = [clip.caption for clip in ClipReader(clips)] if clips else []
    return ["", *NEGATIVE_PROMPTS.values(), *prompts, *captions]


def run_text_cache(args: argparse.Namespace) -> int:
    import torch

    from raven.config import read_spec
    from raven.data.text_cache import merge_parts, write_part
    from raven.models import build_text_encoder
    from raven.training.distributed import close_world, init_world
    from raven.training.teachers import NEGATIVE_PROMPTS

    spec = read_spec(args.spec)
    world = init_world()
    try:
        encoder = build_text_encoder(spec)
        dtype = torch.bfloat16 if world.device.type == "cuda" else torch.float32
        encoder.model.to(world.device, dtype)
        write_part(args.out, cached_prompts(args.prompts, args.clips), encoder, part=world.rank,
                   parts=world.world_size, dtype=dtype)
        world.barrier()
        if world.is_main:
            merge_parts(args.out, world.world_size, {"empty": "", **NEGATIVE_PROMPTS})
    finally:
        close_world(world)
    return 0


def run_clip_latents(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from raven.config import read_spec
    from raven.data.latents import merge_latent_parts, write_latent_part
    from raven.models import build_codec
    from raven.training.distributed import close_world, init_world

    spec = read_spec(args.spec)
    out = Path(args.clips) / "latents"
    world = init_world()
    try:
        codec = build_codec(spec)
        dtype = torch.bfloat16 if world.device.type == "cuda" else torch.float32
        if hasattr(codec, "vae"):  # the codec moves pixels to the VAE's device and dtype itself
            codec.vae.to(world.device, dtype)
        geometry = (spec.video.frames, spec.video.height, spec.video.width)
        write_latent_part(args.clips, out, codec.encode, geometry, part=world.rank, parts=world.world_size, dtype=dtype)
        world.barrier()
        if world.is_main:
            merge_latent_parts(out, world.world_size)
    except ValueError as error:
        return _fail(error)
    finally:
        close_world(world)
    return 0
