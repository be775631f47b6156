"""The hub as separate processes for tests: its CLI, and the `gridtokenx-hub run` processes a
test starts, each listed in RUNNING so that a test that failed half-way leaves none behind."""

from __future__ import annotations

import subprocess
import sys

RUNNING: list[subprocess.Popen[str]] = []


def hub_cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridtokenx.hub", *args, "--database", db],
        capture_output=True,
        text=True,
        timeout=60,
    )


def stop_running() -> None:
    """Kill every process still listed (a test's autouse fixture calls this after it)."""
    while RUNNING:
        proc = RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
