"""Training checkpoints: safetensors + JSON only (never pickle), written atomically, newest complete one wins.

Layout of `<out>/checkpoints/iter-<NNNNNNNN>/`: one `<part>.safetensors` (every tensor of the part) and
`<part>.json` (everything else, with tensors replaced by references) per part — model weights, optimizer,
EMA, loop state, RNG states per rank — and a `done` marker. The directory is filled under a temporary
name, `done` is written last, then it is renamed into place; a checkpoint without `done` is ignored.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from raven.io import atomic_write_text

DONE = "done"
PREFIX = "iter-"
TENSOR_KEY = "__tensor__"
TUPLE_KEY = "__tuple__"


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
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(structure))


def load_part(folder: Path, name: str) -> Any:
    tensor_file, json_file = folder / f"{name}.safetensors", folder / f"{name}.json"
    if not tensor_file.is_file() or not json_file.is_file():
        raise FileNotFoundError(f"checkpoint {folder}: part {name!r} is missing; delete the checkpoint folder to "
                                "resume from an older one")
    return unflatten_state(json.loads(json_file.read_text()), load_file(str(tensor_file)))


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
