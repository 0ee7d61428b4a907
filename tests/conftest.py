"""Shared fixtures. Tests run on CPU with one thread so that several suites can share 2 cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture
def smoke_spec():
    """The resolved smoke-scale run spec (micro models, toy-world geometry)."""
    from raven.config import resolve_spec

    return resolve_spec(REPO_ROOT / "config", "smoke")


@pytest.fixture
def tiny_spec():
    from raven.config import resolve_spec

    return resolve_spec(REPO_ROOT / "config", "tiny")
