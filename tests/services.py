"""Real services for tests: a private Mosquitto, an MQTT collector, the MicroPython port.

A missing binary or server is a clear skip locally and a failure in CI (CI=true), never
a silent pass.
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def tool(name: str, *extra_dirs: str) -> str:
    for directory in (str(Path(sys.executable).parent), *extra_dirs):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        unavailable(f"{name} is not installed")
    return str(found)


# below Linux's ephemeral range (32768-60999): no outgoing connection is given one of these
# while a test's server is still starting, as a port the kernel handed out could be (a
# server that bound seconds later found it taken and exited 1); each port once a session
PORTS = (20_000, 32_000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, outside the ephemeral range; `up` also takes +11 and +12."""
    while True:
        port = random.randrange(*PORTS)
        ports = (port, port + 11, port + 12)  # `up`'s co-signers: never handed out again
        if _handed_out.intersection(ports):
            continue
        _handed_out.update(ports)
        if all(_bindable(p) for p in ports):
            return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Mosquitto:
    """A private Mosquitto broker on its own port, with persistence, that tests may kill."""

    def __init__(self, directory: Path) -> None:
        self.binary = tool("mosquitto", "/usr/sbin")
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # run as us (mosquitto started as root drops to its own user, which could not
            # write the persistence file in our temporary directory)
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class Collector:
    """Subscribes (persistent session, QoS 1) and keeps every message it gets."""

    port: int
    topic: str = "gtx/v1/meters/#"
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._new_client()

    def _new_client(self) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"collector-{self.port}",
            clean_session=False,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.topic, qos=1)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def start(self) -> Collector:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the SUBACK
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._new_client()

    def of(self, kind: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.messages if t.endswith("/" + kind)]

    def wait_for(self, kind: str, count: int, timeout: float = 60) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.of(kind)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise TimeoutError(f"{len(self.of(kind))} of {count} {kind} messages arrived")


def gridtokenx(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `gridtokenx` command as a user runs it, in a process of its own (`env` is laid
    over this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "gridtokenx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def micropython() -> str:
    return tool("micropython")


def mpy_env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(str(p) for p in paths or (FIRMWARE, FIRMWARE / "lib"))
    return env


def run_micropython(code: str, timeout: float = 300) -> str:
    """Run `code` on the MicroPython unix port with the firmware importable."""
    done = subprocess.run(
        [micropython(), "-c", code], capture_output=True, text=True, env=mpy_env(), timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"micropython failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout
