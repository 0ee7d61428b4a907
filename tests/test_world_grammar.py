"""Toy prompt grammar: round trip, vocabulary, clear errors, seeded splits with unseen combinations."""

import pytest

from raven.world.grammar import (
    COLOURS, MOTIONS, SHAPES, Prompt, ToyObject, heldout_triples, parse_prompt, prompt_text, sample_prompts,
    split_of, vocabulary,
)


def test_prompt_text_round_trip_and_vocabulary():
    prompt = Prompt((ToyObject("red", "circle", "left", "fast"), ToyObject("blue", "square", "still")), "black")
    text = prompt_text(prompt)
    assert text == "red circle left fast and blue square still on black"
    assert parse_prompt(text) == prompt
    assert set(text.split(" ")) <= set(vocabulary())
    assert len(COLOURS) >= 6 and len(SHAPES) >= 3 and {"left", "right", "up", "down", "still"} < set(MOTIONS)


@pytest.mark.parametrize("text, message", [
    ("red circle left fast on purple", "unknown word 'purple'"),
    ("red circle left on black", "unknown speed None"),
    ("red circle still fast on black", "takes no speed"),
    ("red circle left fast and red square up slow on black", "different colours"),
    ("red circle left fast", "must end with 'on <background>'"),
])
def test_parse_prompt_errors_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt(text)


def test_sampler_is_seeded_and_splits_are_disjoint_in_triples():
    train = sample_prompts(200, "train", seed=3)
    assert [prompt_text(p) for p in train] == [prompt_text(p) for p in sample_prompts(200, "train", seed=3)]
    assert [prompt_text(p) for p in train] != [prompt_text(p) for p in sample_prompts(200, "train", seed=4)]
    heldout = sample_prompts(100, "heldout", seed=3)
    held = heldout_triples()
    train_triples = {o.triple for p in train for o in p.objects}
    assert not train_triples & held
    assert all(any(o.triple in held for o in p.objects) for p in heldout)
    assert {split_of(p) for p in train} == {"train"} and {split_of(p) for p in heldout} == {"heldout"}
    assert len({prompt_text(p) for p in train}) == 200
    assert any(len(p.objects) == 2 for p in train) and max(len(prompt_text(p).split()) for p in train) <= 11
