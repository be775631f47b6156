"""The hub as separate processes for tests: its CLI, and the `gridtokenx-hub run` processes a
test starts, each listed in RUNNING so that a test that failed half-way leaves none behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from services import free_port

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


def _wait_for_line(proc: subprocess.Popen[bytes], log: Path, start: int, word: str) -> None:
    """Wait until `word` appears in `log` after byte `start` (the process's own output)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if word in log.read_bytes()[start:].decode(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"no {word!r} in {log}: {log.read_text()[-3000:]}")


class LoggedProcess:
    """A process whose output goes to a file, kept across restarts: a pipe nobody reads
    would fill during a long outage and stall the process writing to it."""

    def __init__(self, args: list[str], directory: Path, name: str, ready: str) -> None:
        self.args, self.ready = args, ready
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{name}.log"
        self.log.touch()
        self.proc: subprocess.Popen[bytes] | None = None
        self._start = 0  # the log's size when the process was launched last

    def start(self) -> LoggedProcess:
        return self.launch().wait_ready()

    def launch(self) -> LoggedProcess:
        """Start the process without waiting for it (several can start side by side)."""
        self._start = self.log.stat().st_size
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=self.directory, stdout=out, stderr=subprocess.STDOUT
            )
        RUNNING.append(self.proc)  # type: ignore[arg-type]
        return self

    def wait_ready(self) -> LoggedProcess:
        """Wait until the process launched last printed its ready line."""
        assert self.proc is not None
        _wait_for_line(self.proc, self.log, self._start, self.ready)
        return self

    def kill(self) -> None:
        """kill -9: whatever it held in memory is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> str:
        """SIGTERM, and the whole log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return self.log.read_text()


def hub_process(db: str, mqtt_port: int, directory: Path) -> LoggedProcess:
    """`gridtokenx-hub run` on `db`, reading the broker on `mqtt_port`; its key, archive
    and web port its own (so several can run side by side)."""
    args = [sys.executable, "-m", "gridtokenx.hub", "run", "--database", db]
    args += ["--mqtt-port", str(mqtt_port), "--min-interval-s", "0"]
    args += ["--http-host", "127.0.0.1", "--http-port", str(free_port())]
    args += ["--key-file", str(directory / "hub.key"), "--archive-dir", str(directory / "arc")]
    return LoggedProcess(args, directory, "hub", "ready")


def amqtt_process(directory: Path) -> tuple[LoggedProcess, int]:
    """The embedded broker (amqtt, what `make run` uses) alone, on a port of its own:
    sessions and retained messages in memory only, so a kill -9 loses them all."""
    port = free_port()
    args = [sys.executable, "-m", "gridtokenx.hub", "broker", "--port", str(port)]
    return LoggedProcess(args, directory, "amqtt", "ready"), port


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
