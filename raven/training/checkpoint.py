"""Training checkpoints: safetensors + JSON only (never pickle), written atomically, newest complete one wins.

Layout of `<out>/checkpoints/iter-<NNNNNNNN>/`: one `<part>.safetensors` (every tensor of the part) and
`<part>.json` (everything else, with tensors replaced by references) per part — model weights, optimizer,
EMA, loop state, RNG states per rank — and a `done` marker. The directory is filled under a temporary
name, `done` is written last, then it is renamed into place; a checkpoint without `done` is ignored.

`<out>/checkpoints/run.json` says which run the checkpoints belong to (`run_identity`): a rerun with another
spec or other input files must start over, not resume a different run's state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from raven.io import atomic_write_text, save_tensors

DONE = "done"
PREFIX = "iter-"
STAMP_FULL_BYTES = 64 << 20  # inputs up to this size are hashed whole
STAMP_EDGE_BYTES = 1 << 20
TENSOR_KEY = "__tensor__"
TUPLE_KEY = "__tuple__"
RUN_FILE = "run.json"
CORRUPT = "corrupt-"  # a checkpoint that fails to read is renamed to `corrupt-iter-<N>` beside the others
SUPERSEDED = "checkpoints-superseded"
# Stage options that only say how long or how often: changing them continues the same run.
PACING_OPTIONS = ("iterations", "budget_s", "on_budget", "checkpoint_every")
# Spec sections that decide what a run computes (not where it logs or how it is launched).
RUN_SECTIONS = ("seed", "video", "codec", "text_encoder", "transformer", "chunks", "sampler", "weights")

log = logging.getLogger(__name__)


def flatten_state(state: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """Replace every tensor in a nested dict/list/tuple by a reference and collect it in `tensors`."""
    if isinstance(state, torch.Tensor):
        tensors[path] = state.detach().cpu().contiguous().clone()
        return {TENSOR_KEY: path}
    if isinstance(state, Mapping):
        return {"__keys__": [[json.dumps(k), flatten_state(v, tensors, f"{path}.{k}")] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        items = [flatten_state(v, tensors, f"{path}.{i}") for i, v in enumerate(state)]
        return {TUPLE_KEY: items} if isinstance(state, tuple) else items
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"checkpoint state at {path or '<root>'}: cannot store a {type(state).__name__} without pickle")


def unflatten_state(data: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(data, dict):
        if TENSOR_KEY in data:
            return tensors[data[TENSOR_KEY]]
        if TUPLE_KEY in data:
            return tuple(unflatten_state(v, tensors) for v in data[TUPLE_KEY])
        return {json.loads(k): unflatten_state(v, tensors) for k, v in data["__keys__"]}
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    return data


def save_part(folder: Path, name: str, state: Any) -> None:
    tensors: dict[str, torch.Tensor] = {}
    structure = flatten_state(state, tensors)
    save_tensors(tensors, folder / f"{name}.safetensors")
    (folder / f"{name}.json").write_text(json.dumps(structure))


def load_part(folder: Path, name: str) -> Any:
    tensor_file, json_file = folder / f"{name}.safetensors", folder / f"{name}.json"
    if not tensor_file.is_file() or not json_file.is_file():
        raise FileNotFoundError(f"checkpoint {folder}: part {name!r} is missing; delete the checkpoint folder to "
                                "resume from an older one")
    try:
        return unflatten_state(json.loads(json_file.read_text()), load_file(str(tensor_file)))
    except (SafetensorError, json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"checkpoint {folder}: part {name!r} is unreadable ({error}); delete the checkpoint "
                         "folder to resume from an older one") from None


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint `folder` cannot be read (naming the file), or None. Reads the JSON parts and the
    safetensors headers, which cover the data (a truncated file fails), not the tensors themselves."""
    for part in sorted({p.stem for p in folder.glob("*.json")} | {p.stem for p in folder.glob("*.safetensors")}):
        json_file, tensor_file = folder / f"{part}.json", folder / f"{part}.safetensors"
        try:
            json.loads(json_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"{json_file}: {error}"
        try:
            with safe_open(str(tensor_file), "pt"):
                pass
        except (OSError, SafetensorError) as error:
            return f"{tensor_file}: {error}"
    return None


def set_aside_corrupt(folder: Path) -> Path:
    """Rename a corrupt checkpoint to `corrupt-iter-<N>` (kept for inspection, no longer resumed)."""
    target = folder.with_name(CORRUPT + folder.name)
    shutil.rmtree(target, ignore_errors=True)
    folder.rename(target)
    return target


def rng_state() -> dict[str, Any]:
    """Every global generator of this process: torch CPU (+ CUDA), Python `random`, NumPy."""
    bit_generator = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"state": json.dumps(bit_generator["state"], default=lambda a: a.tolist()), "has_gauss": bit_generator["has_gauss"],
                  "gauss": bit_generator["gauss"]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = {"bit_generator": "MT19937", "state": json.loads(state["numpy"]["state"]),
                   "has_gauss": state["numpy"]["has_gauss"], "gauss": state["numpy"]["gauss"]}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(iteration: int) -> str:
    return f"{PREFIX}{iteration:08d}"


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint (with its `done` marker) under `root`, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    complete = [p for p in root.glob(f"{PREFIX}*") if p.is_dir() and (p / DONE).is_file()]
    return max(complete, key=lambda p: int(p.name[len(PREFIX):]), default=None)


def latest_intact_checkpoint(root: str | Path, world: Any) -> Path | None:
    """The newest complete checkpoint that reads (`checkpoint_problem`). Newer unreadable ones are set aside
    by rank 0, each named in a warning, so a requeued job resumes from an older one instead of crashing
    on the same file again. Every rank reads the same files, so all ranks agree on the result."""
    while (folder := latest_checkpoint(root)) is not None and (problem := checkpoint_problem(folder)) is not None:
        world.barrier()
        if world.is_main:
            aside = set_aside_corrupt(folder)
            log.warning("checkpoint %s is unreadable (%s); resuming from an older one, the bad one is now %s",
                        folder, problem, aside)
        world.barrier()
    return folder


def checkpoint_iteration(folder: Path) -> int:
    return int(folder.name[len(PREFIX):])


def staging_folder(root: Path, iteration: int) -> Path:
    """The temporary folder a checkpoint is written into (every rank writes its RNG part there)."""
    return root / f".tmp-{checkpoint_name(iteration)}"


def publish(root: Path, iteration: int, keep: int) -> Path:
    """Write `done` last, rename the staging folder into place and drop all but the newest `keep` checkpoints."""
    staging, final = staging_folder(root, iteration), root / checkpoint_name(iteration)
    atomic_write_text(staging / DONE, f"{iteration}\n")
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    complete = sorted((p for p in root.glob(f"{PREFIX}*") if (p / DONE).is_file()), key=checkpoint_iteration)
    for old in complete[:-keep]:
        shutil.rmtree(old)
    return final


def input_stamp(path: str | Path | None) -> str | None:
    """A digest of the (relative path, size, content) of a file or of every file under a folder (its own
    checkpoints excluded). Content, not mtime, so that a fresh clone or a copy of committed inputs still
    resumes its committed checkpoints; files over STAMP_FULL_BYTES are read at their head and tail only."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        files = {path.name: path}
    else:
        files = {str(p.relative_to(path)): p for p in sorted(path.rglob("*"))
                 if p.is_file() and "checkpoints" not in p.relative_to(path).parts}
    digest = hashlib.sha256()
    for name, file in files.items():
        size = file.stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        with file.open("rb") as handle:
            if size <= STAMP_FULL_BYTES:
                digest.update(handle.read())
            else:
                digest.update(handle.read(STAMP_EDGE_BYTES))
                handle.seek(size - STAMP_EDGE_BYTES)
                digest.update(handle.read(STAMP_EDGE_BYTES))
        digest.update(b"\n")
    return digest.hexdigest()


def run_identity(spec: Any, stage: str, inputs: Mapping[str, str | Path | None]) -> dict[str, Any]:
    """What makes checkpoints the same run: the spec's model, data and sampler sections, the stage's options
    except its pacing (PACING_OPTIONS), and the stamps of the input files."""
    dumped = spec.model_dump(mode="json")
    options = {k: v for k, v in dumped["stages"].get(stage, {}).items() if k not in PACING_OPTIONS}
    return {"stage": stage, **{k: dumped[k] for k in RUN_SECTIONS}, "options": options,
            "inputs": {name: input_stamp(path) for name, path in inputs.items()}}


def identity_defaults(spec: Any) -> set[str]:
    """Dotted keys of the run sections whose value is the field's default: a field added to the spec since a
    run started shows up there at its default, which is not a change of the run."""
    from raven.tracking.store import flatten

    def sections(dumped: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in dumped.items() if k in RUN_SECTIONS}

    full = flatten(sections(spec.model_dump(mode="json")))
    given = flatten(sections(spec.model_dump(mode="json", exclude_defaults=True)))
    return set(full) - set(given)


EMPTY = ("null", "{}", "[]")  # flattened values that hold nothing


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any], at_default: set[str] = frozenset()) -> list[str]:
    """'key old -> new' for every dotted key whose value differs. Not changes: a key the old run did not record
    whose new value is its default (`at_default`: a field added since), and a key no longer recorded that held
    nothing (None or empty: a field dropped since)."""
    from raven.tracking.store import flatten

    before, after = flatten(old), flatten(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) == after.get(key):
            continue
        if (key not in before and key in at_default) or (key not in after and before[key] in EMPTY):
            continue
        changes.append(f"{key} {before.get(key)} -> {after.get(key)}")
    return changes


def claim_checkpoints(root: str | Path, identity: Mapping[str, Any], at_default: set[str] = frozenset()) -> list[str]:
    """Make `root` hold only checkpoints of the run `identity`. Checkpoints of another run (or of unknown
    origin) are moved, whole, to `<out>/checkpoints-superseded` (replacing an older one) with a warning.
    Returns what changed (empty when the checkpoints can be resumed)."""
    root = Path(root)
    run_file = root / RUN_FILE
    changes: list[str] = []
    if root.is_dir() and any(root.iterdir()):
        if run_file.is_file():
            changes = identity_changes(json.loads(run_file.read_text()), identity, at_default)
        else:
            changes = [f"{run_file} is missing (checkpoints of unknown origin)"]
    if changes:
        superseded = root.parent / SUPERSEDED
        shutil.rmtree(superseded, ignore_errors=True)
        root.rename(superseded)
        log.warning("%s belong to another run (%s); starting over, the old checkpoints are in %s",
                    root, "; ".join(changes), superseded)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_file, json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return changes
