"""UnifiedReward-qwen (Qwen2.5-VL) point scores of generated videos; the main table's Dyn. Deg. (docs/method.md §10).

As the release: frames at 2 fps, the point-score prompt with the (extended) text prompt, greedy
decoding; the reply rates visual quality, temporal consistency, dynamic degree, text-to-video
alignment and factual consistency on 1-4 and gives a 1-10 final score. A rating missing from the
reply defaults to 2.5 (the final score to 5.0); every default is counted and reported.
The model loads from a local folder only (transformers; its video processor needs torchvision, which
the CUDA installs that run the 32B model have), sharded over every GPU the job sees (`device_map="auto"`:
the 32B model in bf16 spans a node's GPUs; on a machine without one it sits on the CPU). Frames are read
from each sample's mp4, only the 2 fps ones decoded, one video at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ASPECTS = ("visual quality", "temporal consistency", "dynamic degree", "text-to-video alignment",
           "factual consistency")
DEFAULT_RATING, DEFAULT_FINAL = 2.5, 5.0
# The release's point-score instruction for generated videos (the model was trained on this wording).
POINT_SCORE_PROMPT = (
    "Suppose you are an expert in judging and evaluating the quality of AI-generated videos, please watch the "
    "frames of a given video and see the text prompt for generating the video.\n"
    "Then give scores from 5 different dimensions:\n"
    "(1) visual quality: the quality of the video in terms of clearness, resolution, brightness, and color\n"
    "(2) temporal consistency, the consistency of objects or humans in video\n"
    "(3) dynamic degree, the degree of dynamic changes\n"
    "(4) text-to-video alignment, the alignment between the text prompt and the video content\n"
    "(5) factual consistency, the consistency of the video content with the common-sense and factual knowledge\n\n"
    "For each dimension, output a number from [1,2,3,4], \n"
    "in which '1' means 'Bad', '2' means 'Average', '3' means 'Good', \n"
    "'4' means 'Real' or 'Perfect' (the video is like a real video)\n"
    "Finally, based on above 5 dimensions, assign a score from 1 to 10 after 'Final Score:'\n"
    "Here is an output example:\n"
    "visual quality: 4\ntemporal consistency: 4\ndynamic degree: 3\ntext-to-video alignment: 1\n"
    "factual consistency: 2\nFinal Score: 6\n\n"
    "**Note: In the example above, scores are placeholders meant only to demonstrate the format. Your actual "
    "evaluation should be based on the quality of the given video.**\n"
    "Your task is provided as follows: Text Prompt: [{prompt}]"
)
MODEL_FILES = ("config.json", "tokenizer_config.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # older / newer transformers


@dataclass
class Rating:
    aspects: dict[str, float]
    final: float
    defaulted: list[str] = field(default_factory=list)


def instruction(prompt: str) -> str:
    return POINT_SCORE_PROMPT.replace("{prompt}", prompt)


def messages(prompt: str) -> list[dict[str, Any]]:
    """The chat of one rating: the video, then the instruction (as the release orders them)."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": instruction(prompt)}]}]


def frame_indices(frames: int, fps: float, target_fps: float) -> list[int]:
    """Indices of the frames at `target_fps` (t = 0, 1/target, 2/target, ... seconds) of a `fps` video."""
    step = fps / target_fps
    return sorted({min(frames - 1, round(k * step)) for k in range(int(np.floor((frames - 1) / step)) + 1)})


def parse_reply(reply: str) -> Rating:
    """The five 1-4 ratings and the final score of a reply; missing ones take the release's defaults."""
    aspects, defaulted = {}, []
    for aspect in ASPECTS:
        match = re.search(rf"{re.escape(aspect)}\s*[:：]\s*([1-4](?:\.\d+)?)", reply, flags=re.IGNORECASE)
        aspects[aspect] = float(match.group(1)) if match else DEFAULT_RATING
        if not match:
            defaulted.append(aspect)
    match = re.search(r"final score\s*[:：]\s*(\d+(?:\.\d+)?)", reply, flags=re.IGNORECASE)
    if not match:
        defaulted.append("final score")
    return Rating(aspects, float(match.group(1)) if match else DEFAULT_FINAL, defaulted)


def check_model_folder(path: str | Path) -> Path:
    path = Path(path)
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        missing.append(" or ".join(PROCESSOR_FILES))
    weights = list(path.glob("*.safetensors")) if path.is_dir() else []
    if missing or not weights:
        listing = ", ".join(missing + ([] if weights else ["*.safetensors"]))
        raise FileNotFoundError(f"{path}: not a complete local UnifiedReward-qwen folder (missing {listing}); "
                                "download CodeGoat24/UnifiedReward-qwen-32b there once and set "
                                "stages.unified_reward.model to it; nothing is downloaded at run time")
    return path


def load_model(path: str | Path, dtype: str = "bfloat16"):
    """The Qwen2.5-VL model of a local folder (strict, local files only), its layers spread over every
    visible GPU by accelerate (`device_map="auto"`), or on the CPU when there is none."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=getattr(torch, dtype),
                                                               local_files_only=True, device_map="auto")
    return model.eval()


@dataclass
class UnifiedReward:
    model: Any
    processor: Any
    max_new_tokens: int = 256

    @classmethod
    def load(cls, path: str | Path, dtype: str = "bfloat16", max_new_tokens: int = 256) -> UnifiedReward:
        from transformers import AutoProcessor

        path = check_model_folder(path)
        return cls(load_model(path, dtype), AutoProcessor.from_pretrained(path, local_files_only=True), max_new_tokens)

    def encode(self, frames: np.ndarray, prompt: str, target_fps: float) -> Any:
        """Processor inputs for uint8 frames [T, H, W, 3] already sampled at `target_fps` (so Qwen2.5-VL's
        temporal positions use 2 / target_fps seconds per grid step), capped per frame like qwen-vl-utils."""
        text = self.processor.apply_chat_template(messages(prompt), tokenize=False, add_generation_prompt=True)
        metadata = [{"fps": target_fps, "total_num_frames": len(frames)}]
        return self.processor(text=[text], videos=[list(frames)], video_metadata=metadata, do_sample_frames=False,
                              cap_pixels_per_frame=True, return_tensors="pt").to(self.model.device)

    def reply(self, frames: np.ndarray, prompt: str, target_fps: float) -> str:
        """Greedy reply to the point-score instruction."""
        import torch

        inputs = self.encode(frames, prompt, target_fps)
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]


def score_samples(judge: UnifiedReward, folder: str | Path, target_fps: float = 2.0) -> dict[str, Any]:
    """Mean dynamic-degree rating (1-4) over the videos of a `raven sample` folder (its samples.json lists
    each mp4 and the prompt it was generated from), the parse failures, and every reply."""
    from raven.data.video import read_mp4_frames
    from raven.io import read_json

    folder = Path(folder)
    per_video = []
    for record in read_json(folder / "samples.json"):
        frames, _ = read_mp4_frames(folder / record["file"], lambda count, fps: frame_indices(count, fps, target_fps))
        text = judge.reply(frames, record["prompt"], target_fps)
        rating = parse_reply(text)
        per_video.append({"file": record["file"], "prompt": record["prompt"], "reply": text, **rating.aspects,
                          "final": rating.final, "defaulted": rating.defaulted})
    return summarize(per_video)


def summarize(per_video: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "unified-reward", "dyn_deg": float(np.mean([v["dynamic degree"] for v in per_video])),
            "final": float(np.mean([v["final"] for v in per_video])),
            "parse_failures": sum("dynamic degree" in v["defaulted"] for v in per_video),
            "defaulted_fields": sum(len(v["defaulted"]) for v in per_video), "videos": len(per_video),
            "per_video": list(per_video)}
