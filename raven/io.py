"""Atomic writes: a reader never sees a partial file, a killed writer leaves the old one intact."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary file is created with mode 0666 less the user's umask, as `open()` would create `path`
    (mkstemp's 0600 would make every output unreadable to the group in a shared results folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp_path = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process's umask: the mode `open()` gives a new file."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def keep_umask(path: str | Path) -> Path:
    """Give a file, or every file under a folder, the mode `open()` would have given it. safetensors (0.8)
    writes its files 0600 whatever the umask, and diffusers / peft / transformers write weights through
    it, so a shared results folder would hide every weight file from the group."""
    path, mode = Path(path), umask_mode()
    for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        os.chmod(file, mode)
    return path


def save_tensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """A safetensors file, written atomically and with the user's umask."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        keep_umask(tmp)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: expected a JSON file written by an earlier stage") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); delete it and rerun the stage that writes it") from None
