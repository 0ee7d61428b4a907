"""How much the text encoder tells the transformer which object has which shape and motion (issue 19).

The transformer cross-attends to the encoder's token vectors as a set. For a two-object prompt, "red circle
right fast and blue square still on grey" and its binding swap "red square right fast and blue circle still
on grey" have the same words; only the encoder's mixing of neighbouring tokens tells them apart. This measures,
for every two-object prompt of the train and held-out splits (whose two objects differ in what is swapped),
the mean over its tokens of the distance to the nearest token of the other prompt, relative to the token's norm:

- `shape_swap`: the two objects' shapes exchanged;
- `motion_swap`: the two objects' motions (with speeds) exchanged;
- `shape_change` (reference): the first object's shape replaced by another, a prompt with different words.

A swap far below `shape_change` means the two bindings reach the transformer as nearly the same set of vectors.
Each `--neighbour-bias` (text_encoder.neighbour_bias) is measured on the same prompts.
Writes benchmarks/reports/text_binding.json.

    .venv/bin/python benchmarks/text_binding.py [--scale tiny] [--prompts 256]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from host import machine

ROOT = Path(__file__).resolve().parents[1]


def set_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over a's tokens [L, D] of the distance to the nearest token of b, relative to a's token norm."""
    return float((torch.cdist(a, b).min(dim=1).values / a.norm(dim=1)).mean())


def variants(prompt) -> dict:
    """The binding swaps and the reference change of a two-object prompt."""
    from raven.world.grammar import SHAPES

    first, second = prompt.objects
    other_shape = next(s for s in SHAPES if s not in (first.shape, second.shape))

    def objects(a, b):
        return dataclasses.replace(prompt, objects=(a, b))

    return {
        "shape_swap": objects(dataclasses.replace(first, shape=second.shape), dataclasses.replace(second, shape=first.shape)),
        "motion_swap": objects(dataclasses.replace(first, motion=second.motion, speed=second.speed),
                               dataclasses.replace(second, motion=first.motion, speed=first.speed)),
        "shape_change": objects(dataclasses.replace(first, shape=other_shape), second),
    }


def summary(values: list[float]) -> dict:
    values = np.asarray(values)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    return {"mean": float(values.mean()), "ci": [float(values.mean() - half), float(values.mean() + half)],
            "min": float(values.min()), "max": float(values.max()), "pairs": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--prompts", type=int, default=256, help="prompts drawn per split; the two-object ones are used")
    parser.add_argument("--neighbour-bias", type=float, nargs="+", default=[0.0, 2.0, 4.0],
                        help="text_encoder.neighbour_bias values measured (0: the plain random encoder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "text_binding.json"))
    args = parser.parse_args()

    from raven.config import resolve_spec
    from raven.io import atomic_write_json
    from raven.models.text import build_text_encoder
    from raven.world.grammar import prompt_text, sample_prompts

    spec = resolve_spec(ROOT / "config", args.scale)
    two_object = [p for split in ("train", "heldout") for p in sample_prompts(args.prompts, split, spec.seed)
                  if len(p.objects) == 2]
    measured = []
    for bias in args.neighbour_bias:
        encode = build_text_encoder(spec.model_copy(update={
            "text_encoder": spec.text_encoder.model_copy(update={"neighbour_bias": bias})}))
        distances: dict[str, list[float]] = {}
        for prompt in two_object:
            texts = {"prompt": prompt_text(prompt), **{k: prompt_text(v) for k, v in variants(prompt).items()}}
            texts = {k: v for k, v in texts.items() if k == "prompt" or v != texts["prompt"]}  # a swap of equals
            embeddings = dict(zip(texts, encode(list(texts.values()))))
            length = len(texts["prompt"].split()) + 1  # the words and </s>; every variant has as many
            for name in texts.keys() - {"prompt"}:
                distances.setdefault(name, []).append(
                    set_distance(embeddings["prompt"][:length], embeddings[name][:length]))
        measured.append({"neighbour_bias": bias, **{name: summary(v) for name, v in sorted(distances.items())}})
        print(bias, {name: round(float(np.mean(v)), 4) for name, v in sorted(distances.items())}, flush=True)
    report = {"scale": args.scale, "text_encoder": spec.text_encoder.model_dump(mode="json"),
              "two_object_prompts": len(two_object), "measured": measured, "machine": machine()}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
