"""The hub as separate processes for tests: its CLI, and the `gridtokenx-hub run` processes a
test starts, each listed in RUNNING so that a test that failed half-way leaves none behind."""

from __future__ import annotations

import signal
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


class HubProcess:
    """`gridtokenx-hub run` on a broker's port, in a process of its own (listed in RUNNING);
    `start` returns once it is subscribed and serving, `stop` gives all it printed."""

    def __init__(self, db: str, mqtt_port: int, *extra: str) -> None:
        self.db, self.mqtt_port, self.extra = db, mqtt_port, extra
        self.proc: subprocess.Popen[str] | None = None
        self.banner: list[str] = []  # what it printed until ready

    def start(self) -> HubProcess:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx.hub",
                "run",
                "--database",
                self.db,
                "--mqtt-port",
                str(self.mqtt_port),
                "--min-interval-s",
                "0",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        RUNNING.append(self.proc)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # until it is subscribed and serving
            self.banner.append(line)
            if "ready" in line:
                break
        assert self.proc.poll() is None, "".join(self.banner)
        return self

    def kill(self) -> None:
        """kill -9: no handler runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return "".join(self.banner) + out
