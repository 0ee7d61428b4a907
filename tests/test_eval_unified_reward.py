"""UnifiedReward adapter: the release's point-score prompt, 2 fps frame picking, the reply parser on
recorded replies (with the release's defaults, counted), and loading a tiny random Qwen2.5-VL."""

from __future__ import annotations

import json

import pytest

from raven.evaluation.unified_reward import (
    ASPECTS,
    check_model_folder,
    frame_indices,
    instruction,
    load_model,
    messages,
    parse_reply,
    summarize,
)

GOOD = ("visual quality: 3\ntemporal consistency: 4\ndynamic degree: 2\ntext-to-video alignment: 3\n"
        "factual consistency: 3\nFinal Score: 7")


def test_instruction_names_the_five_aspects_and_the_prompt():
    text = instruction("a cat surfing a wave")
    assert text.endswith("Text Prompt: [a cat surfing a wave]")
    positions = [text.index(f"({i + 1}) {aspect}") for i, aspect in enumerate(ASPECTS)]
    assert positions == sorted(positions)
    assert "Final Score:" in text and "[1,2,3,4]" in text
    chat = messages("p")
    assert chat[0]["content"][0] == {"type": "video"} and chat[0]["content"][1]["text"] == instruction("p")


def test_frames_at_two_fps():
    assert frame_indices(81, 16, 2) == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80]
    assert frame_indices(9, 8, 2) == [0, 4, 8]
    assert frame_indices(3, 16, 2) == [0]


def test_only_the_two_fps_frames_are_decoded_from_the_mp4(tmp_path):
    import numpy as np

    from raven.data.video import VideoError, read_mp4, read_mp4_frames, write_mp4

    video = np.random.default_rng(0).integers(0, 256, size=(33, 16, 16, 3), dtype=np.uint8)
    write_mp4(tmp_path / "v.mp4", video, 16)
    seen = []
    frames, fps = read_mp4_frames(tmp_path / "v.mp4", lambda n, fps: seen.append((n, fps)) or frame_indices(n, fps, 2))
    assert seen == [(33, 16.0)] and fps == 16.0
    assert np.array_equal(frames, read_mp4(tmp_path / "v.mp4")[0][[0, 8, 16, 24, 32]])
    (tmp_path / "cut.mp4").write_bytes((tmp_path / "v.mp4").read_bytes()[:2000])
    with pytest.raises(VideoError, match="cut.mp4"):
        read_mp4_frames(tmp_path / "cut.mp4", lambda n, fps: frame_indices(n, fps, 2))


def test_parser_on_recorded_replies():
    good = parse_reply(GOOD)
    assert good.aspects["dynamic degree"] == 2.0 and good.final == 7.0 and good.defaulted == []
    spaced = parse_reply("Visual Quality：4\nTemporal consistency : 3.5\nDynamic degree: 4\n"
                         "text-to-video alignment: 2\nfactual consistency: 1\nFinal score: 8.5")
    assert spaced.aspects == {"visual quality": 4.0, "temporal consistency": 3.5, "dynamic degree": 4.0,
                              "text-to-video alignment": 2.0, "factual consistency": 1.0}
    assert spaced.final == 8.5
    partial = parse_reply("visual quality: 3\ndynamic degree: 7\nFinal Score: 6")  # 7 is off the 1-4 scale
    assert partial.aspects["dynamic degree"] == 2.5 and "dynamic degree" in partial.defaulted
    assert partial.final == 6.0 and len(partial.defaulted) == 4
    garbage = parse_reply("I cannot rate this video.")
    assert garbage.final == 5.0 and set(garbage.aspects.values()) == {2.5} and len(garbage.defaulted) == 6


def test_summary_counts_parse_failures():
    replies = [GOOD, "nothing useful", "dynamic degree: 4"]
    per_video = [{"prompt": "p", "reply": r, **parse_reply(r).aspects, "final": parse_reply(r).final,
                  "defaulted": parse_reply(r).defaulted} for r in replies]
    summary = summarize(per_video)
    assert summary["dyn_deg"] == pytest.approx((2.0 + 2.5 + 4.0) / 3)
    assert summary["parse_failures"] == 1 and summary["defaulted_fields"] == 0 + 6 + 5
    assert summary["final"] == pytest.approx((7 + 5 + 5) / 3)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json.*safetensors"):
        check_model_folder(tmp_path / "UnifiedReward-qwen-32b")


def tiny_config():
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config={"vocab_size": 128, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 256,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "fullatt_block_indexes": [0]},
        image_token_id=120, video_token_id=121, vision_start_token_id=122, vision_end_token_id=123,
        eos_token_id=127, pad_token_id=0)


def test_tiny_random_qwen25_vl_loads_strictly_and_decodes_greedily(tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    reference = Qwen2_5_VLForConditionalGeneration(tiny_config()).eval()
    reference.save_pretrained(tmp_path / "tiny")
    model = load_model(tmp_path / "tiny", "float32")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    ids = torch.tensor([[1, 2, 3, 4]])
    first = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    again = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    assert torch.equal(first, again) and first.shape == (1, 10)
    expected = reference.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    assert torch.equal(first, expected)


CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for content in message['content'] %}"
                 "{% if content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
                 "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_processor():
    """A Qwen2.5-VL processor around a word-level tokenizer whose special-token ids match tiny_config()."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    words = sorted(set(instruction("a red square moving right").replace("\n", " ").split()))[:100]
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    specials = {"<|image_pad|>": 120, "<|video_pad|>": 121, "<|vision_start|>": 122, "<|vision_end|>": 123,
                "<|im_start|>": 124, "<|im_end|>": 125, "<|endoftext|>": 127}
    vocab.update(specials)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(list(specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="<|endoftext|>", chat_template=CHAT_TEMPLATE)
    size = {"shortest_edge": 56 * 56, "longest_edge": 56 * 56}
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(size=size), tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(size=size), chat_template=CHAT_TEMPLATE)


def test_tiny_qwen25_vl_rates_videos_end_to_end(tmp_path):
    """The full path: local folder -> processor (video at 2 fps) -> greedy reply -> parse. Needs torchvision
    (the Qwen2-VL video processor does), which CUDA installs have; the CPU-only main env skips it."""
    pytest.importorskip("torchvision", reason="transformers' Qwen2-VL video processor needs torchvision")
    import numpy as np
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from raven.data.video import write_mp4
    from raven.evaluation.unified_reward import UnifiedReward, score_samples

    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(tiny_config()).save_pretrained(tmp_path / "model")
    tiny_processor().save_pretrained(tmp_path / "model")
    judge = UnifiedReward.load(tmp_path / "model", "float32", max_new_tokens=8)
    videos = np.random.default_rng(0).integers(0, 256, size=(2, 9, 16, 16, 3), dtype=np.uint8)
    inputs = judge.encode(videos[0][[0, 4, 8]], "a red square moving right", 2.0)
    assert inputs["second_per_grid_ts"].tolist() == [1.0]  # 2 frames per grid step at 2 fps
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]] and int((inputs["input_ids"] == 121).sum()) == 8
    reply = judge.reply(videos[0][[0, 4, 8]], "a red square moving right", 2.0)
    assert reply == judge.reply(videos[0][[0, 4, 8]], "a red square moving right", 2.0)
    for index, video in enumerate(videos):
        write_mp4(tmp_path / f"samples/videos/{index:05d}.mp4", video, 8)
    records = [{"index": i, "prompt": "a red square moving right", "seed": i, "file": f"videos/{i:05d}.mp4"}
               for i in range(2)]
    (tmp_path / "samples/samples.json").write_text(json.dumps(records))
    report = score_samples(judge, tmp_path / "samples", target_fps=2)
    # a random model never writes "dynamic degree: <1-4>": every video takes the release's default
    assert report["dyn_deg"] == 2.5 and report["parse_failures"] == 2 and report["videos"] == 2
