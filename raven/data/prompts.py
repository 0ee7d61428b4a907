"""Prompt files: reading user files defensively, VidProM filtering, dedup, seeded samples (docs/method.md §11).

A prompt file is UTF-8 text, one prompt per line; blank lines are ignored. Binary data, invalid UTF-8,
control characters, over-long lines and files without a prompt are errors naming the file and line.
VidProM (a local parquet or CSV with a `prompt` column and Detoxify safety scores) is filtered by:
dedup (case and whitespace folded), word-count bounds, every safety score ≤ a threshold, and at least
one motion/action keyword and one subject keyword (the paper's exact recipe is unpublished: the
keyword lists are options); then a seeded sample of N.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from raven.io import atomic_write_text

MAX_FILE_BYTES = 512 * 2**20


def read_prompt_file(path: str | Path, max_line_chars: int = 2000) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prompt file not found (one prompt per line, UTF-8)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes is too large for a prompt file (max {MAX_FILE_BYTES})")
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(f"{path}: contains NUL bytes — a binary file, not a UTF-8 prompt file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 at byte {error.start}; save it as UTF-8 text") from None
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if len(line) > max_line_chars:
            raise ValueError(f"{path}:{number}: line of {len(line)} characters exceeds {max_line_chars}; "
                             "one prompt per line")
        bad = next((c for c in line if unicodedata.category(c) == "Cc" and c != "\t"), None)
        if bad is not None:
            raise ValueError(f"{path}:{number}: control character {bad!r} in a prompt; remove it")
        prompts.append(line)
    if not prompts:
        raise ValueError(f"{path}: no prompts (the file is empty or blank)")
    return prompts


def write_prompt_file(path: str | Path, prompts: Sequence[str]) -> None:
    for prompt in prompts:
        if "\n" in prompt or "\r" in prompt:
            raise ValueError(f"prompt {prompt[:60]!r} contains a line break; one prompt per line")
    atomic_write_text(path, "".join(f"{p}\n" for p in prompts))


def _normalise(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def dedup(prompts: Iterable[str]) -> list[str]:
    """First occurrence of each prompt, case and whitespace folded; surrounding whitespace stripped."""
    seen, out = set(), []
    for prompt in prompts:
        key = _normalise(prompt)
        if key and key not in seen:
            seen.add(key)
            out.append(" ".join(prompt.split()))
    return out


def _words(prompt: str) -> set[str]:
    return set(re.findall(r"[a-z']+", prompt.lower()))


def keyword_filter(prompts: Iterable[str], motion_keywords: Sequence[str], subject_keywords: Sequence[str]) -> list[str]:
    """Keep prompts with at least one motion/action keyword and one subject keyword (whole words)."""
    motion, subject = {k.lower() for k in motion_keywords}, {k.lower() for k in subject_keywords}
    return [p for p in prompts if _words(p) & motion and _words(p) & subject]


def length_filter(prompts: Iterable[str], min_words: int, max_words: int) -> list[str]:
    return [p for p in prompts if min_words <= len(p.split()) <= max_words]


def load_table(path: str | Path) -> pa.Table:
    """A local parquet or CSV table (VidProM's metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: VidProM table not found; download VidProM's metadata "
                                "(parquet or CSV) and set stages.data.vidprom_path")
    try:
        return pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{path}: cannot read as {'parquet' if path.suffix == '.parquet' else 'CSV'} ({error})") from None


def safe_prompts(table: pa.Table, source: str, prompt_column: str, safety_columns: Sequence[str],
                 safety_max: float) -> list[str]:
    """Prompts whose every safety score is ≤ safety_max (a missing score counts as unsafe)."""
    missing = [c for c in [prompt_column, *safety_columns] if c not in table.column_names]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; it has {table.column_names}")
    prompts = table.column(prompt_column).to_pylist()
    scores = [table.column(c).to_pylist() for c in safety_columns]
    keep = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str) and all(s[i] is not None and float(s[i]) <= safety_max for s in scores):
            keep.append(prompt)
    return keep


def seeded_sample(prompts: Sequence[str], count: int, seed: int) -> list[str]:
    if count > len(prompts):
        raise ValueError(f"asked for {count} prompts but only {len(prompts)} pass the filters; "
                         "lower the count or relax the filters")
    return random.Random(seed).sample(list(prompts), count)


def split_sample(prompts: Sequence[str], train: int, heldout: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint seeded train and held-out samples of a prompt pool."""
    both = seeded_sample(prompts, train + heldout, seed)
    return both[:train], both[train:]
