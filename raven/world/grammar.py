"""The toy world's prompt grammar, its vocabulary and the train / held-out split of prompts.

A prompt names one or two objects and a background:

    <colour> <shape> <motion> [<speed>] [and <colour> <shape> <motion> [<speed>]] on <background>

`still` objects take no speed; moving objects always do. The two objects of a prompt have different
colours (the parser tells objects apart by colour). Words are separated by single spaces; every word
a prompt can contain is in `vocabulary()`.

Held-out prompts contain at least one colour-shape-motion combination ("triple") that no training
prompt contains; the held-out triples are a fixed function of the grammar, so every stage agrees.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass
from typing import Literal

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 210, 220),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "grey": (110, 110, 110),
    "white": (245, 245, 245),
}
SHAPES = ("square", "circle", "triangle")
# Unit direction per motion in image coordinates (x right, y down).
MOTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-0.7071067811865476, -0.7071067811865476),
    "up-right": (0.7071067811865476, -0.7071067811865476),
    "down-left": (-0.7071067811865476, 0.7071067811865476),
    "down-right": (0.7071067811865476, 0.7071067811865476),
    "still": (0.0, 0.0),
}
SPEEDS = ("slow", "fast")
CONNECTIVES = ("and", "on")
HELDOUT_FRACTION = 0.2
HELDOUT_SEED = 0
MAX_OVERLAP_FRAMES = 2
REFERENCE_GEOMETRY = (16, 16, 9, 8)  # height, width, frames, fps at which the sampler checks overlap

Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class ToyObject:
    colour: str
    shape: str
    motion: str
    speed: str | None = None  # None exactly when motion == "still"

    def __post_init__(self) -> None:
        _check_word(self.colour, COLOURS, "colour")
        _check_word(self.shape, SHAPES, "shape")
        _check_word(self.motion, MOTIONS, "motion")
        if self.motion == "still" and self.speed is not None:
            raise ValueError(f"a still object takes no speed, got {self.speed!r}")
        if self.motion != "still":
            _check_word(self.speed, SPEEDS, "speed")

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)


@dataclass(frozen=True)
class Prompt:
    objects: tuple[ToyObject, ...]
    background: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"a toy prompt has 1 or 2 objects, got {len(self.objects)}")
        if len({obj.colour for obj in self.objects}) != len(self.objects):
            raise ValueError("the objects of a toy prompt must have different colours")
        _check_word(self.background, BACKGROUNDS, "background")


def _check_word(word: str | None, allowed, kind: str) -> None:
    if word not in allowed:
        raise ValueError(f"unknown {kind} {word!r}; allowed: {', '.join(allowed)}")


def vocabulary() -> list[str]:
    """Every word a prompt can contain (split a prompt on single spaces to get its words)."""
    return [*COLOURS, *SHAPES, *MOTIONS, *SPEEDS, *CONNECTIVES, *BACKGROUNDS]


def prompt_text(prompt: Prompt) -> str:
    phrases = [" ".join(w for w in (o.colour, o.shape, o.motion, o.speed) if w) for o in prompt.objects]
    return f"{' and '.join(phrases)} on {prompt.background}"


def parse_prompt(text: str) -> Prompt:
    """Inverse of `prompt_text`; an unknown word or a malformed phrase raises ValueError naming it."""
    words = text.split()
    known = set(vocabulary())
    for word in words:
        if word not in known:
            raise ValueError(f"toy prompt {text!r}: unknown word {word!r}; the toy vocabulary is {sorted(known)}")
    if len(words) < 3 or words[-2] != "on":
        raise ValueError(f"toy prompt {text!r}: must end with 'on <background>'")
    phrases, current = [], []
    for word in words[:-2]:
        if word == "and":
            phrases.append(current)
            current = []
        else:
            current.append(word)
    phrases.append(current)
    objects = []
    for phrase in phrases:
        if len(phrase) not in (3, 4):
            raise ValueError(f"toy prompt {text!r}: object phrase {' '.join(phrase)!r} is not "
                             "'<colour> <shape> <motion> [<speed>]'")
        try:
            objects.append(ToyObject(*phrase))
        except (ValueError, TypeError) as error:
            raise ValueError(f"toy prompt {text!r}: {error}") from None
    try:
        return Prompt(tuple(objects), words[-1])
    except ValueError as error:
        raise ValueError(f"toy prompt {text!r}: {error}") from None


def all_triples() -> list[tuple[str, str, str]]:
    return list(itertools.product(COLOURS, SHAPES, MOTIONS))


@functools.cache
def heldout_triples() -> frozenset[tuple[str, str, str]]:
    """A fixed 20% of colour-shape-motion triples, chosen so each colour, shape and motion still
    occurs in training (greedy over a seeded shuffle)."""
    rng = random.Random(HELDOUT_SEED)
    triples = all_triples()
    rng.shuffle(triples)
    target = int(HELDOUT_FRACTION * len(triples))
    held: set[tuple[str, str, str]] = set()
    for triple in triples:
        if len(held) == target:
            break
        rest = [t for t in all_triples() if t not in held and t != triple]
        if all(any(t[i] == triple[i] for t in rest) for i in range(3)):
            held.add(triple)
    return frozenset(held)


def split_of(prompt: Prompt) -> Split:
    held = heldout_triples()
    return "heldout" if any(obj.triple in held for obj in prompt.objects) else "train"


def _random_object(rng: random.Random, exclude_colours: set[str]) -> ToyObject:
    colour = rng.choice([c for c in COLOURS if c not in exclude_colours])
    motion = rng.choice(list(MOTIONS))
    speed = None if motion == "still" else rng.choice(SPEEDS)
    return ToyObject(colour, rng.choice(SHAPES), motion, speed)


def sample_prompts(count: int, split: Split, seed: int, two_object_fraction: float = 0.3) -> list[Prompt]:
    """`count` distinct prompts of `split`, deterministic in `seed` (rejection sampling).

    A held-out prompt has at least one held-out triple; a training prompt has none. Two-object prompts
    whose objects cannot avoid overlapping for more than MAX_OVERLAP_FRAMES frames are rejected.
    """
    from raven.world.render import min_overlap_frames  # the renderer builds on this module

    rng = random.Random(f"{split}:{seed}")
    held = heldout_triples()
    seen: set[str] = set()
    prompts: list[Prompt] = []
    attempts = 0
    while len(prompts) < count:
        attempts += 1
        if attempts > 1000 * count + 10000:
            raise ValueError(f"could not sample {count} distinct {split} prompts; ask for fewer")
        first = _random_object(rng, set())
        objects = [first]
        if rng.random() < two_object_fraction:
            objects.append(_random_object(rng, {first.colour}))
        if split == "heldout" and not any(o.triple in held for o in objects):
            objects[0] = _heldout_object(rng, held, {o.colour for o in objects[1:]})
        if split == "train" and any(o.triple in held for o in objects):
            continue
        prompt = Prompt(tuple(objects), rng.choice(list(BACKGROUNDS)))
        if len(objects) == 2 and min_overlap_frames(prompt, *REFERENCE_GEOMETRY) > MAX_OVERLAP_FRAMES:
            continue
        text = prompt_text(prompt)
        if text not in seen:
            seen.add(text)
            prompts.append(prompt)
    return prompts


def _heldout_object(rng: random.Random, held: frozenset, exclude_colours: set[str]) -> ToyObject:
    colour, shape, motion = rng.choice(sorted(t for t in held if t[0] not in exclude_colours))
    return ToyObject(colour, shape, motion, None if motion == "still" else rng.choice(SPEEDS))
