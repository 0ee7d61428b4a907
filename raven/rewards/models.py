"""The paper's reward models as adapters over LOCAL weights (SPEC §10 "Reward models"; nothing is downloaded).

Each adapter checks its paths first (a missing one is an error naming the config key and the expected
file), then imports its library lazily (the optional extra `raven-pipeline[rewards]`):
- `raft_RAFT`, `ms_MS`: RAFT dynamic degree and AMT-S motion smoothness (`raven.rewards.motion`), the
  published networks from VBench's `raft-things.pth` and `amt-s.pth`.
- `videoalign_TA`: VideoAlign (Qwen2-VL-2B + LoRA via peft + a linear reward head over the special reward
  tokens) on frames at 2 fps; the TA output.
- `aq_AES`: CLIP ViT-L/14 image embeddings (transformers), L2-normalised, through the LAION linear
  aesthetic head; /10; frame mean.
- `iq_IMG`: MUSIQ trained on SPAQ (pyiqa); frames whose longer side exceeds 512 px are resized to 512;
  /100; frame mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from raven.config import ConfigError
from raven.rewards.motion import AMTMotionSmoothness, RAFTDynamicDegree, frame_stride
from raven.rewards.registry import Reward, RewardSources, to_frames

VIDEOALIGN_FPS = 2.0
MUSIQ_MAX_SIDE = 512
VIDEOALIGN_SPECIAL_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")
VIDEOALIGN_NON_LORA = "non_lora_state_dict.pth"
VIDEOALIGN_LORA_FILES = ("adapter_config.json", "adapter_model.safetensors", VIDEOALIGN_NON_LORA)
EXTRA = "pip install 'raven-pipeline[rewards]'"


def require_path(path: Path | None, key: str, expected: str) -> Path:
    """The configured local path, or an error naming the config key and the file it should hold."""
    if path is None:
        raise ConfigError(f"{key} is not set: it must point to {expected} (local weights; nothing is downloaded)")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{key} = {path}: no such file or folder; expected {expected}")
    return path


def require_library(module: str, reward: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"reward {reward} needs the Python package {module.split('.')[0]!r} ({error}); {EXTRA}") from None


class CLIPAesthetic:
    """LAION linear aesthetic head on L2-normalised CLIP ViT-L/14 image embeddings, /10, frame mean."""

    def __init__(self, clip_folder: Path, head_file: Path, device: str):
        transformers = require_library("transformers", "aq_AES")
        self.model = transformers.CLIPVisionModelWithProjection.from_pretrained(clip_folder).eval().to(device)
        self.processor = transformers.CLIPImageProcessor.from_pretrained(clip_folder)
        state = torch.load(head_file, map_location="cpu", weights_only=True)
        self.head = torch.nn.Linear(self.model.config.projection_dim, 1)
        try:
            self.head.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{head_file}: not a LAION linear head for embeddings of width "
                             f"{self.model.config.projection_dim} ({error})") from None
        self.head.eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        scores = []
        for frames in to_frames(videos):
            pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
            embeds = torch.nn.functional.normalize(self.model(pixel_values=pixels).image_embeds, dim=-1)
            scores.append(float(self.head(embeds).squeeze(-1).mean()) / 10.0)
        return torch.tensor(scores, dtype=torch.float64)


class MUSIQImagingQuality:
    """MUSIQ (SPAQ) per frame, longer side at most 512 px, /100, frame mean."""

    def __init__(self, weights: Path, device: str):
        musiq = require_library("pyiqa.archs.musiq_arch", "iq_IMG")
        self.model = musiq.MUSIQ(pretrained_model_path=str(weights)).eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        scores = []
        for video in videos:
            frames = ((video.transpose(0, 1).float() + 1) / 2).clamp(0, 1).to(self.device)
            longest = max(frames.shape[-2:])
            if longest > MUSIQ_MAX_SIDE:
                size = [round(side * MUSIQ_MAX_SIDE / longest) for side in frames.shape[-2:]]
                frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", antialias=True)
            scores.append(float(torch.stack([self.model(f[None]).flatten()[0] for f in frames]).mean()) / 100.0)
        return torch.tensor(scores, dtype=torch.float64)


def videoalign_checkpoint(folder: Path, key: str) -> tuple[Path, bool]:
    """The newest VideoAlign checkpoint under `folder` (KwaiVGI/VideoReward layout) and whether it is the
    LoRA layout: `checkpoint-<step>/model.pth` (full state dict) or `checkpoint-<step>/adapter_config.json`
    + `adapter_model.safetensors` + `non_lora_state_dict.pth`; `folder` itself may be such a checkpoint."""
    steps = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
                   reverse=True)
    for candidate in [folder, *steps]:
        if (candidate / "model.pth").is_file():
            return candidate, False
        if all((candidate / name).is_file() for name in VIDEOALIGN_LORA_FILES):
            return candidate, True
    raise FileNotFoundError(
        f"{key}.videoalign = {folder}: no VideoAlign checkpoint; expected checkpoint-<step>/model.pth or "
        f"checkpoint-<step>/{{{', '.join(VIDEOALIGN_LORA_FILES)}}} (the KwaiVGI/VideoReward release layout)")


class VideoAlignTextAlignment:
    """VideoAlign's TA: Qwen2-VL + the LoRA adapter (peft) + a linear reward head `rm_head` read at the
    special reward tokens; frames at 2 fps. Non-LoRA tensors (reward head, resized embeddings, visual
    merger) come from `non_lora_state_dict.pth` or the full `model.pth`."""

    def __init__(self, folder: Path, base: Path, device: str, key: str):
        checkpoint, lora = videoalign_checkpoint(folder, key)
        transformers = require_library("transformers", "videoalign_TA")
        self.processor = transformers.AutoProcessor.from_pretrained(base)
        self.processor.tokenizer.add_special_tokens({"additional_special_tokens": list(VIDEOALIGN_SPECIAL_TOKENS)})
        self.token_ids = self.processor.tokenizer.convert_tokens_to_ids(list(VIDEOALIGN_SPECIAL_TOKENS))
        model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(base)
        model.resize_token_embeddings(len(self.processor.tokenizer))
        if lora:
            model = require_library("peft", "videoalign_TA").PeftModel.from_pretrained(model, checkpoint)
        state_file = checkpoint / (VIDEOALIGN_NON_LORA if lora else "model.pth")
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        self.head = reward_head(state, state_file)
        rest = {k: v for k, v in state.items() if "rm_head." not in k and "lora_" not in k}
        mapped = strip_prefix(rest, model.state_dict())
        if len(mapped) != len(rest):
            raise ValueError(f"{state_file}: {len(rest) - len(mapped)} tensors match no parameter of the Qwen2-VL "
                             f"model at {base}; is {key}.videoalign_base the base VideoAlign was trained from?")
        model.load_state_dict(mapped, strict=False)
        self.model = (model.merge_and_unload() if lora else model).eval().to(device)
        self.head.eval().to(device)
        self.device = device

    def messages(self, prompt: str) -> list[dict]:
        question = (f"Rate the video for the caption \"{prompt}\": visual quality {VIDEOALIGN_SPECIAL_TOKENS[0]}, "
                    f"motion quality {VIDEOALIGN_SPECIAL_TOKENS[1]}, text alignment {VIDEOALIGN_SPECIAL_TOKENS[2]}")
        return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        stride = frame_stride(fps, VIDEOALIGN_FPS)
        scores = []
        for frames, prompt in zip(to_frames(videos), prompts):
            frames = frames[::stride]
            text = self.processor.apply_chat_template(self.messages(prompt), add_generation_prompt=False)
            inputs = self.processor(text=[text], videos=[list(frames)], return_tensors="pt").to(self.device)
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[-1][0]
            ta_position = (inputs["input_ids"][0] == self.token_ids[2]).nonzero()[-1, 0]
            scores.append(float(self.head(hidden[ta_position])[-1]))
        return torch.tensor(scores, dtype=torch.float64)


def reward_head(state: dict[str, torch.Tensor], source: Path) -> torch.nn.Linear:
    """VideoAlign's linear reward head from the `rm_head.*` tensors of a checkpoint."""
    head = {k.split("rm_head.", 1)[1]: v for k, v in state.items() if "rm_head." in k}
    if "weight" not in head:
        raise ValueError(f"{source}: no rm_head.weight (VideoAlign's reward head); not a VideoAlign checkpoint")
    layer = torch.nn.Linear(head["weight"].shape[1], head["weight"].shape[0], bias="bias" in head)
    layer.load_state_dict(head)
    return layer


def strip_prefix(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map keys saved under a wrapper (e.g. `base_model.model.`) onto the reference model's keys."""
    out = {}
    for key, value in state.items():
        match = next((ref for ref in reference if key.endswith(ref)), None)
        if match is not None:
            out[match] = value
    return out


def build_model_reward(name: str, sources: RewardSources, key: str) -> Reward:
    """The adapter of reward `name` over the local weights in `sources` (config path `key`)."""
    if name == "raft_RAFT":
        return RAFTDynamicDegree(require_path(sources.raft, f"{key}.raft", "VBench's RAFT weights raft-things.pth"),
                                 sources.device)
    if name == "aq_AES":
        clip = require_path(sources.clip, f"{key}.clip", "a CLIP ViT-L/14 folder (transformers save_pretrained)")
        head = require_path(sources.aesthetic_head, f"{key}.aesthetic_head",
                            "the LAION linear aesthetic head sa_0_4_vit_l_14_linear.pth")
        return CLIPAesthetic(clip, head, sources.device)
    if name == "iq_IMG":
        return MUSIQImagingQuality(require_path(sources.musiq, f"{key}.musiq",
                                                "the pyiqa MUSIQ checkpoint trained on SPAQ (musiq_spaq_ckpt-*.pth)"),
                                   sources.device)
    if name == "videoalign_TA":
        checkpoint = require_path(sources.videoalign, f"{key}.videoalign",
                                  "the VideoAlign checkpoint folder (KwaiVGI/VideoReward: model_config.json, "
                                  "checkpoint-<step>/...)")
        base = require_path(sources.videoalign_base, f"{key}.videoalign_base", "a Qwen2-VL-2B-Instruct folder")
        return VideoAlignTextAlignment(checkpoint, base, sources.device, key)
    if name == "ms_MS":
        return AMTMotionSmoothness(require_path(sources.amt, f"{key}.amt", "VBench's AMT-S weights amt-s.pth"),
                                   sources.device)
    raise KeyError(f"unknown reward {name!r}")
