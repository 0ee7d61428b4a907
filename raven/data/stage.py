"""The data stage's work: training / held-out prompt files and clip shards, from `stages.data` options."""

from __future__ import annotations

from pathlib import Path

from raven.config import RunSpec
from raven.data.openvid import OpenVidClips, build_interpolator, openvid_index
from raven.data.options import DataOptions
from raven.data.prompts import (
    dedup, keyword_filter, length_filter, load_table, read_prompt_file, safe_prompts, split_sample,
)
from raven.data.shards import count_rows, write_shards
from raven.data.toy import toy_clip
from raven.io import atomic_write_json, read_json
from raven.world.grammar import prompt_text, sample_prompts


def build_prompts(options: DataOptions) -> tuple[list[str], list[str], dict]:
    """(train, held-out, summary) prompts from the toy grammar, VidProM or a user file."""
    if options.prompt_source == "toy":
        train = [prompt_text(p) for p in sample_prompts(
            options.train_prompts, "train", options.seed, options.two_object_fraction)]
        heldout = [prompt_text(p) for p in sample_prompts(
            options.heldout_prompts, "heldout", options.seed, options.two_object_fraction)]
        return train, heldout, {"source": "toy"}
    if options.prompt_source == "file":
        pool = dedup(read_prompt_file(options.prompt_file, options.max_line_chars))
        counts = {"source": "file", "path": str(options.prompt_file), "unique": len(pool)}
    else:
        table = load_table(options.vidprom_path)
        safe = safe_prompts(table, str(options.vidprom_path), options.prompt_column, options.safety_columns,
                            options.safety_max)
        unique = dedup(safe)
        bounded = length_filter(unique, options.min_words, options.max_words)
        pool = keyword_filter(bounded, options.motion_keywords, options.subject_keywords)
        counts = {"source": "vidprom", "path": str(options.vidprom_path), "rows": table.num_rows, "safe": len(safe),
                  "unique": len(unique), "length_ok": len(bounded), "keyword_ok": len(pool)}
    train, heldout = split_sample(pool, options.train_prompts, options.heldout_prompts, options.seed)
    return train, heldout, counts


def build_clips(spec: RunSpec, options: DataOptions, prompts_path: Path | None, out: Path, part: int = 0,
                parts: int = 1) -> dict:
    """Write this worker's clip shards into `out` (every `parts`-th shard from `part`) and its part summary
    `part-<part>.json`. One worker: returns the whole summary (`clips_summary`)."""
    video = spec.video
    if options.clip_source == "toy":
        if prompts_path is None:
            raise ValueError("toy clips need --prompts: the training prompt file written by `raven data prompts`")
        prompts = read_prompt_file(prompts_path, options.max_line_chars)
        per = options.clips_per_prompt
        count = min(len(prompts) * per, options.max_clips or len(prompts) * per)

        def make_clip(i: int):
            return toy_clip(prompts[i // per], options.seed * 1_000_000 + i, video.height, video.width,
                            video.frames, video.fps, options.render_fps)

        write_shards(out, count, make_clip, options.shard_size, part, parts)
        summary = {"source": "toy", "render_fps": options.render_fps, "sources": count, "skipped": 0, "problems": []}
    else:
        index = openvid_index(options.openvid_path, options.openvid_csv)[: options.max_clips]
        clips = OpenVidClips(index, video.height, video.width, video.frames, video.fps, options.seed,
                             build_interpolator(options.interpolator, options.rife_path))
        write_shards(out, len(clips), clips, options.shard_size, part, parts)
        summary = {"source": "openvid", "path": str(options.openvid_path), "interpolator": options.interpolator,
                   "sources": len(index), "skipped": clips.skipped, "problems": clips.problems[:20]}
    atomic_write_json(Path(out) / f"part-{part}.json", {**summary, "fps": video.fps, "frames": video.frames})
    return clips_summary(out, parts) if parts == 1 else summary


def clips_summary(out: Path, parts: int) -> dict:
    """Merge the workers' part summaries: clips and shards written, sources skipped (with the first problems)."""
    out = Path(out)
    missing = [str(out / f"part-{k}.json") for k in range(parts) if not (out / f"part-{k}.json").is_file()]
    if missing:
        raise ValueError(f"{out}: clip workers {missing} did not finish; rerun `raven data clips`")
    summaries = [read_json(out / f"part-{k}.json") for k in range(parts)]
    paths = sorted(out.glob("shard-*.parquet"))
    summary = {**summaries[0], "skipped": sum(s["skipped"] for s in summaries),
               "problems": [p for s in summaries for p in s["problems"]][:20],
               "clips": count_rows(paths), "shards": len(paths), "workers": parts}
    if summary["source"] == "toy":
        del summary["problems"]
    elif summary["clips"] == 0:  # training on zero clips would fail far later, or silently learn nothing
        raise ValueError(f"{summary['path']}: none of its {summary['sources']} listed clips is usable "
                         f"({summary['skipped']} skipped), e.g. {'; '.join(summary['problems'][:3]) or 'the CSV lists no clips'}; "
                         "fix the folder or stages.data.openvid_csv")
    return summary
