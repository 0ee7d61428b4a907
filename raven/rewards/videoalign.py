"""VideoAlign's text-alignment reward (KwaiVGI/VideoAlign, the `VideoReward` checkpoint) as the RAVEN release
runs it (its `configs/models/videoalign.jsonc`): Qwen2-VL-2B + LoRA (peft) + a linear reward head `rm_head`
read at the three special reward tokens; VideoAlign's own `detailed_special` prompt template
(`data/videoalign_detailed_special.txt`, verbatim from VideoAlign's `prompt_template.py`); frames sampled
uniformly at 2 fps (Qwen2-VL's `smart_nframes`), resized in 8-bit to at most `max_frame_pixels` = 200704
pixels a frame in multiples of 28 (`smart_resize`, bicubic with antialiasing); the TA output normalised
with the checkpoint's `inference_config` (TA_mean, TA_std in `model_config.json`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

TEMPLATE = (Path(__file__).parent / "data" / "videoalign_detailed_special.txt").read_text(encoding="utf-8")
SPECIAL_TOKENS = ("<|VQ_reward|>", "<|MQ_reward|>", "<|TA_reward|>")
FPS = 2.0
MAX_FRAME_PIXELS = 200704
FACTOR = 28  # Qwen2-VL's patch (14) × merge (2)
MIN_PIXELS = 128 * FACTOR * FACTOR
FRAME_FACTOR, MIN_FRAMES, MAX_FRAMES = 2, 4, 768
NON_LORA = "non_lora_state_dict.pth"
LORA_FILES = ("adapter_config.json", "adapter_model.safetensors", NON_LORA)


def question(prompt: str) -> str:
    return TEMPLATE.format(text_prompt=prompt)


def frame_indices(total: int, fps: float, target_fps: float = FPS) -> list[int]:
    """Qwen2-VL's uniform sampling: round(T / fps · target) frames, even, in [4, min(768, T)], evenly spaced."""
    low = math.ceil(MIN_FRAMES / FRAME_FACTOR) * FRAME_FACTOR
    high = math.floor(min(MAX_FRAMES, total) / FRAME_FACTOR) * FRAME_FACTOR
    count = round(min(max(total / fps * target_fps, low), high) / FRAME_FACTOR) * FRAME_FACTOR
    count = min(count, total)
    if count < FRAME_FACTOR:
        raise ValueError(f"VideoAlign needs at least {FRAME_FACTOR} frames, got {total}")
    return torch.linspace(0, total - 1, count).round().long().tolist()


def frame_size(height: int, width: int, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[int, int]:
    """Qwen2-VL's `smart_resize`: sides in multiples of 28 with MIN_PIXELS ≤ H·W ≤ max_pixels, aspect kept."""
    h, w = max(FACTOR, round(height / FACTOR) * FACTOR), max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        return math.floor(height / beta / FACTOR) * FACTOR, math.floor(width / beta / FACTOR) * FACTOR
    if h * w < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (height * width))
        return math.ceil(height * beta / FACTOR) * FACTOR, math.ceil(width * beta / FACTOR) * FACTOR
    return h, w


def prepare_frames(video: torch.Tensor, fps: float) -> torch.Tensor:
    """[3, T, H, W] in [−1, 1] → the sampled, resized 8-bit frames [n, 3, h, w] as float (0…255)."""
    pixels = ((video.detach().float() + 1) * 127.5).round().clamp(0, 255).transpose(0, 1)
    frames = pixels[frame_indices(len(pixels), fps)]
    size = frame_size(*frames.shape[-2:])
    resized = torch.nn.functional.interpolate(frames, size=size, mode="bicubic", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255)


def videoalign_checkpoint(folder: Path, key: str) -> tuple[Path, bool]:
    """The newest VideoAlign checkpoint under `folder` (KwaiVGI/VideoReward layout) and whether it is the
    LoRA layout: `checkpoint-<step>/model.pth` (full state dict) or `checkpoint-<step>/adapter_config.json`
    + `adapter_model.safetensors` + `non_lora_state_dict.pth`; `folder` itself may be such a checkpoint."""
    steps = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
                   reverse=True)
    for candidate in [folder, *steps]:
        if (candidate / "model.pth").is_file():
            return candidate, False
        if all((candidate / name).is_file() for name in LORA_FILES):
            return candidate, True
    raise FileNotFoundError(
        f"{key}.videoalign = {folder}: no VideoAlign checkpoint; expected checkpoint-<step>/model.pth or "
        f"checkpoint-<step>/{{{', '.join(LORA_FILES)}}} (the KwaiVGI/VideoReward release layout)")


def model_config(checkpoint: Path, key: str) -> dict:
    """VideoAlign's `model_config.json` (beside the checkpoint-<step> folders, or in the checkpoint)."""
    for path in (checkpoint / "model_config.json", checkpoint.parent / "model_config.json"):
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"{key}.videoalign: no model_config.json in {checkpoint} or {checkpoint.parent}; "
                            "it holds the LoRA settings and the reward normalisation (inference_config)")


def current_key(key: str) -> str:
    """A VideoAlign key (Qwen2-VL of transformers 4.45, possibly peft-wrapped) → the same weight in today's
    layout, where the language model and the vision tower sit under `model.language_model` / `model.visual`."""
    key = key.removeprefix("base_model.model.")
    if key.startswith("visual."):
        return "model." + key
    if key.startswith("model.") and not key.startswith(("model.language_model.", "model.visual.")):
        return "model.language_model." + key.removeprefix("model.")
    return key


def reward_head(state: dict[str, torch.Tensor], source: Path) -> torch.nn.Linear:
    """VideoAlign's linear reward head from the `rm_head.*` tensors of a checkpoint."""
    head = {k.split("rm_head.", 1)[1]: v for k, v in state.items() if "rm_head." in k}
    if "weight" not in head:
        raise ValueError(f"{source}: no rm_head.weight (VideoAlign's reward head); not a VideoAlign checkpoint")
    layer = torch.nn.Linear(head["weight"].shape[1], head["weight"].shape[0], bias="bias" in head)
    layer.load_state_dict(head)
    return layer


def read_checkpoint(checkpoint: Path, lora: bool, config: dict) -> tuple[dict[str, torch.Tensor], float | None, Path]:
    """(tensors in today's key layout, LoRA alpha or None, the file named in errors). The LoRA layout's
    adapter tensors get peft's adapter name `default`, as VideoAlign's loader inserts it."""
    if lora:
        from safetensors.torch import load_file

        adapter = {k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
                   for k, v in load_file(checkpoint / "adapter_model.safetensors").items()}
        state = {**torch.load(checkpoint / NON_LORA, map_location="cpu", weights_only=True), **adapter}
        alpha = json.loads((checkpoint / "adapter_config.json").read_text()).get("lora_alpha")
        source = checkpoint / "adapter_model.safetensors"
    else:
        source = checkpoint / "model.pth"
        state = torch.load(source, map_location="cpu", weights_only=True)
        alpha = config.get("peft_lora_config", {}).get("lora_alpha")
    state = {current_key(k): v for k, v in state.items()}
    if any(".lora_A." in k for k in state) and alpha is None:
        raise ValueError(f"{source} holds LoRA weights but no lora_alpha is given (adapter_config.json or "
                         "peft_lora_config in model_config.json)")
    return state, alpha, source


def load_reward_model(base: Path, checkpoint: Path, lora: bool, config: dict, vocab: int, dtype: torch.dtype):
    """(Qwen2-VL with VideoAlign's weights and its LoRA merged, reward head) from a VideoAlign checkpoint."""
    import peft
    import transformers

    state, alpha, source = read_checkpoint(checkpoint, lora, config)
    head = reward_head(state, source)
    model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(base, dtype=dtype)
    model.resize_token_embeddings(vocab)
    down = {k.split(".lora_A.")[0]: v for k, v in state.items() if ".lora_A." in k}
    prefix = ""
    if down:
        config = peft.LoraConfig(r=int(next(iter(down.values())).shape[0]), lora_alpha=alpha, target_modules=sorted(down),
                                 bias="none")
        model, prefix = peft.get_peft_model(model, config), "base_model.model."
    mapped = {prefix + k: v for k, v in state.items() if not k.startswith("rm_head.")}
    reference = model.state_dict()
    unknown = sorted(set(mapped) - set(reference))
    missing = [] if lora else sorted(set(reference) - set(mapped))
    if unknown or missing:
        raise ValueError(f"{source}: {len(unknown)} tensors match no weight of the Qwen2-VL model at {base} "
                         f"(e.g. {unknown[:3]}) and {len(missing)} of its weights are missing (e.g. {missing[:3]}); "
                         "is videoalign_base the Qwen2-VL VideoAlign was trained from?")
    model.load_state_dict(mapped, strict=False)
    return (model.merge_and_unload() if down else model).eval(), head.to(dtype)


class VideoAlignTextAlignment:
    def __init__(self, folder: Path, base: Path, device: str, key: str):
        checkpoint, lora = videoalign_checkpoint(folder, key)
        config = model_config(checkpoint, key)
        norm = config.get("inference_config") or {}
        if not {"TA_mean", "TA_std"} <= set(norm):
            raise ValueError(f"{key}.videoalign: model_config.json has no inference_config.TA_mean/TA_std")
        self.ta_mean, self.ta_std = float(norm["TA_mean"]), float(norm["TA_std"])
        import transformers

        self.processor = transformers.AutoProcessor.from_pretrained(base, padding_side="right")
        self.processor.tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
        self.token_ids = self.processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model, head = load_reward_model(base, checkpoint, lora, config, len(self.processor.tokenizer), dtype)
        self.model, self.head, self.device = model.to(device), head.to(device), device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        scores = []
        for video, prompt in zip(videos, prompts):
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question(prompt)}]}]
            text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            inputs = self.processor(text=[text], videos=[prepare_frames(video, fps)], padding=True, return_tensors="pt",
                                    videos_kwargs={"do_rescale": True}).to(self.device)
            hidden = self.model.model(**inputs).last_hidden_state[0]
            positions = [int((inputs["input_ids"][0] == token).nonzero()[-1, 0]) for token in self.token_ids]
            raw = self.head(hidden[positions]).float()  # [3, 1]: VQ, MQ, TA (VideoAlign's output_dim 1)
            scores.append((float(raw[2, -1]) - self.ta_mean) / self.ta_std)
        return torch.tensor(scores, dtype=torch.float64)
