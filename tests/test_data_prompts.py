"""Prompt files: hostile input gives clear errors; VidProM filtering; seeded disjoint samples."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raven.data.options import DataOptions
from raven.data.prompts import (
    dedup, keyword_filter, read_prompt_file, seeded_sample, split_sample, write_prompt_file,
)
from raven.data.stage import build_prompts


def test_round_trip_and_blank_lines(tmp_path):
    path = tmp_path / "p.txt"
    write_prompt_file(path, ["a dog runs", "a cat jumps"])
    path.write_text(path.read_text() + "\n   \n")
    assert read_prompt_file(path) == ["a dog runs", "a cat jumps"]
    with pytest.raises(ValueError, match="line break"):
        write_prompt_file(path, ["two\nlines"])


@pytest.mark.parametrize("content, message", [
    (b"", "no prompts"),
    (b"\n \n", "no prompts"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "NUL bytes"),
    (b"ok line\n\xff\xfe bad\n", "not valid UTF-8 at byte 8"),
    (b"ok\n" + b"x" * 3000 + b"\n", r"p.txt:2: line of 3000 characters"),
    (b"fine\nbell \x07 here\n", r"p.txt:2: control character '\\x07'"),
])
def test_hostile_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "p.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_prompt_file(path)


def test_filters_and_samples():
    assert dedup(["A dog  runs", "a dog runs ", "a cat"]) == ["A dog runs", "a cat"]
    kept = keyword_filter(["a dog runs fast", "a sunset", "running water", "a dog sleeps"], ["runs", "running"], ["dog"])
    assert kept == ["a dog runs fast"]
    pool = [f"prompt {i}" for i in range(50)]
    assert seeded_sample(pool, 5, 1) == seeded_sample(pool, 5, 1) != seeded_sample(pool, 5, 2)
    train, heldout = split_sample(pool, 30, 10, 0)
    assert len(train) == 30 and len(heldout) == 10 and not set(train) & set(heldout)
    with pytest.raises(ValueError, match="only 50 pass"):
        seeded_sample(pool, 51, 0)


def test_vidprom_pipeline(tmp_path):
    prompts = ["A dog runs on the beach", "a dog runs on the beach", "a man walking in the rain at night",
               "sunset over the sea, cinematic", "cat jumping", "a horse running through a burning field",
               "a robot dancing"]
    toxicity = [0.01, 0.01, 0.05, 0.0, 0.0, 0.9, 0.1]
    table = pa.table({"uuid": [str(i) for i in range(7)], "prompt": prompts, "toxicity": toxicity,
                      "obscene": [0.0] * 7})
    path = tmp_path / "vidprom.parquet"
    pq.write_table(table, path)
    options = DataOptions(prompt_source="vidprom", vidprom_path=path, safety_columns=["toxicity", "obscene"],
                          min_words=3, train_prompts=2, heldout_prompts=1)
    train, heldout, summary = build_prompts(options)
    # unsafe horse dropped; duplicate dog folded; sunset lacks motion; "cat jumping" too short
    assert sorted(train + heldout) == ["A dog runs on the beach", "a man walking in the rain at night", "a robot dancing"]
    assert summary["safe"] == 6 and summary["unique"] == 5 and summary["keyword_ok"] == 3
    with pytest.raises(ValueError, match=r"missing column\(s\) \['threat'\]"):
        build_prompts(options.model_copy(update={"safety_columns": ["toxicity", "threat"]}))


def test_toy_prompts_are_the_grammar_splits():
    train, heldout, summary = build_prompts(DataOptions(train_prompts=20, heldout_prompts=5))
    from raven.world.grammar import parse_prompt, split_of

    assert summary["source"] == "toy" and len(train) == 20 and len(heldout) == 5
    assert {split_of(parse_prompt(p)) for p in train} == {"train"}
    assert {split_of(parse_prompt(p)) for p in heldout} == {"heldout"}
