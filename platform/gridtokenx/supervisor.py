"""Child processes of `gridtokenx up`, supervised: started, probed until ready, restarted
with exponential backoff when they die, stopped in reverse order.

Readiness is asked of the child itself (its `/ready` endpoint, its port), never read from a
log: an appended log still holds the previous run's lines.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

Probe = Callable[[], bool]
LAST_WORDS = 12  # lines of a failed child's log shown with its failure
LAST_WORDS_BYTES = 64 * 1024
ACCESS_LINE = '"logger": "gridtokenx.access"'  # one JSON line per request: not last words


def http_ready(url: str) -> Probe:
    """Ready when `url` answers 200 (the platform's and the hub's /ready)."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


class ChildFailed(RuntimeError):
    """A child exited or stayed unready while it was being started."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    ready: Probe
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    failures: int = 0  # consecutive early deaths: the backoff's exponent
    started_at: float = 0.0
    restart_at: float | None = None
    log_from: int = 0  # where this run's lines begin in the appended log

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.log_from = out.tell()
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def death(self) -> str:
        """How it ended, for the one reading `up`'s output: its exit code, log, last lines."""
        code = self.process.returncode if self.process else None
        words = self.last_words()
        return f"the {self.name} exited ({code}); see {self.log}" + (
            f"; its last lines:\n{words}" if words else ""
        )

    def last_words(self, lines: int = LAST_WORDS) -> str:
        """This run's last log lines other than request lines: what a child said before it
        died, shown with the failure (the log itself may be gone with a CI machine)."""
        try:
            with self.log.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(self.log_from, size - LAST_WORDS_BYTES))
                tail = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        said = [line for line in tail if line.strip() and ACCESS_LINE not in line]
        return "\n".join(said[-lines:])


@dataclass
class Supervisor:
    """Keeps its children running. `say` gets one line per event (started, died, restarting)."""

    say: Callable[[str], None] = print
    backoff_s: float = 1.0  # first restart delay; doubled per consecutive early death
    max_backoff_s: float = 30.0
    stable_s: float = 60.0  # a child up this long has its backoff reset
    children: list[Child] = field(default_factory=list)
    delays: list[tuple[str, float]] = field(default_factory=list)  # every restart delay given
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self, child: Child, timeout: float = 300.0) -> None:
        """Spawn `child` and wait until its probe answers; raise if it dies or times out."""
        self.launch(child)
        self.ready(child, timeout)

    def launch(self, child: Child) -> None:
        """Spawn `child` and supervise it without waiting (children that start in parallel)."""
        self.children.append(child)
        child.spawn()

    def ready(self, child: Child, timeout: float = 300.0) -> None:
        """Wait for a launched child's probe, and say so."""
        self.wait_ready(child, timeout)
        self.say(f"{child.name}: ready (pid {child.process.pid if child.process else '-'})")

    def wait_ready(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not child.ready():
            if self.stopping.is_set():
                raise ChildFailed(f"stopped while the {child.name} was starting")
            if not child.alive():
                raise ChildFailed(child.death())
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"the {child.name} is not ready after {timeout:g} s; see {child.log}"
                )
            time.sleep(0.1)

    def delay(self, child: Child) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2**child.failures))

    def watch(self) -> None:
        """One supervision step (call it every second or so): notice dead children and
        restart each when its backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.alive() or child.process is None:
                continue
            if child.restart_at is None:
                if now - child.started_at >= self.stable_s:
                    child.failures = 0
                wait = self.delay(child)
                child.failures += 1
                child.restart_at = now + wait
                self.delays.append((child.name, wait))
                self.say(
                    f"{child.name}: exited with code {child.process.returncode}; "
                    f"restarting in {wait:g} s (see {child.log})"
                )
            elif now >= child.restart_at:
                child.restarts += 1
                child.spawn()
                self.say(
                    f"{child.name}: restarted (pid {child.process.pid}), restart {child.restarts}"
                )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the children, the last started first; SIGKILL what does not stop."""
        for child in reversed(self.children):
            process = child.process
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
