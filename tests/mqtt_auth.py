"""The brokers with logins, for tests: the shipped Mosquitto configuration and the embedded
amqtt with the hub's passwd and acl, and a paho client that records whether its login was
accepted (shared by test_broker_auth, test_enrol and test_up)."""

from __future__ import annotations

import getpass
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from services import ROOT, Mosquitto, free_port

SHIPPED = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


class AuthMosquitto(Mosquitto):
    """deploy/mosquitto/mosquitto.conf as shipped, with only its paths and port replaced."""

    def __init__(self, directory: Path, auth: Path) -> None:
        super().__init__(directory)
        text = SHIPPED.read_text()
        for old, new in (
            ("listener 1883\n", f"listener {self.port} 127.0.0.1\n"),
            ("/etc/mosquitto/gridtokenx/", f"{auth}/"),
            ("persistence_location /var/lib/mosquitto/", f"persistence_location {directory}/"),
        ):
            assert old in text
            text = text.replace(old, new)
        self.conf.write_text(text + f"user {getpass.getuser()}\n")

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)


class AuthAmqtt:
    """`gridtokenx hub broker --auth DIR` in its own process."""

    def __init__(self, auth: Path) -> None:
        self.port, self.auth = free_port(), auth
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> AuthAmqtt:
        command = [sys.executable, "-m", "gridtokenx.hub", "broker", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*command, "--auth", str(self.auth)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "ready" in line:
                break
        return self

    def reload(self) -> None:  # it re-reads the files when they change
        pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Client:
    """A paho client that records whether its login was accepted and what it received."""

    def __init__(self, port: int, user: str | None, password: str | None, name: str) -> None:
        self.accepted: bool | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.answered = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.answered.wait(10)

    def _on_connect(self, c: object, u: object, f: object, rc: object, p: object = None) -> None:
        self.accepted = not rc.is_failure  # type: ignore[attr-defined]
        self.answered.set()

    def subscribe(self, *topics: str) -> None:
        for t in topics:
            self.client.subscribe(t, qos=1)
        time.sleep(0.3)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def login(port: int, user: str | None, password: str | None, name: str = "probe") -> bool:
    c = Client(port, user, password, name)
    accepted = bool(c.accepted)
    c.close()
    return accepted
