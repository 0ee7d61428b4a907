"""Helpers shared by the tests that start local servers (MLflow UI, user study, SLURM, gloo ranks)."""

from __future__ import annotations

import socket

# Headless Debian Chromium for the browser tests; autoplay so the user-study videos play unattended.
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
