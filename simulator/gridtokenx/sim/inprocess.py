"""The lighter meter fleet for large N: one Python thread plays every meter.

Each meter still has its own Ed25519 key from OS randomness, counts its own sequence and
signs readings in the wire format (gridtokenx.wire, the spec's CPython side, which passes
the same vectors as the firmware). It reads the emulated chip's registers directly instead
of over Modbus. Without broker logins all meters publish through one MQTT connection (a
broker without an ACL); given each meter's login (`login`), each meter has its own
connection as itself, so a broker enforcing the hub's ACL takes its readings.

With a `state` file the keys and sequence numbers survive a restart (the firmware keeps
them in flash): the hub then knows the same keys, and a restarted meter's readings are not
refused as replays. A sequence number is saved before a reading with it is sent.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion

from gridtokenx.sim.meters import GridMeters, MeteredHousehold
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic


@dataclass
class VirtualMeter:
    meter_id: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0

    @property
    def public_key(self) -> str:
        return bytes(self.key.verify_key).hex()


class InProcessFleet:
    def __init__(
        self,
        physics: GridMeters,
        mqtt_host: str,
        mqtt_port: int,
        interval_s: float,
        homes: list[MeteredHousehold] | None = None,
        state: Path | None = None,
    ) -> None:
        self.physics = physics
        self.homes = physics.homes if homes is None else homes
        self.mqtt_host, self.mqtt_port = mqtt_host, mqtt_port
        self.interval_s = interval_s
        self.state = state
        kept = json.loads(state.read_text()) if state is not None and state.exists() else {}
        self.meters = [
            VirtualMeter(m.home.meter_id, SigningKey(bytes.fromhex(kept[m.home.meter_id]["key"])))
            if m.home.meter_id in kept
            else VirtualMeter(m.home.meter_id)
            for m in self.homes
        ]
        for meter in self.meters:
            meter.seq = int(kept.get(meter.meter_id, {}).get("seq", 0))
        self._save()
        self.logins: dict[str, str] = {}
        self.clients: dict[str, mqtt.Client] = {}
        self.published = 0

    def _save(self) -> None:
        """Keys and sequence numbers, 0600, replaced atomically (the meters' 'flash')."""
        if self.state is None:
            return
        body = {m.meter_id: {"key": bytes(m.key).hex(), "seq": m.seq} for m in self.meters}
        tmp = self.state.with_name(f".{self.state.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(tmp, self.state)

    def login(self, meter_id: str, password: str) -> None:
        """The broker password the hub issued this meter (it logs in as its meter id)."""
        self.logins[meter_id] = password

    def write_keys(self, path: Path) -> None:
        """meter id, public key, bus: what an installer registers at the hub."""
        with path.open("w") as f:
            for meter, home in zip(self.meters, self.homes, strict=True):
                f.write(f"{meter.meter_id}\t{meter.public_key}\t{home.home.bus}\n")

    def _connect(self, stop: threading.Event, wait_s: float = 5.0) -> None:
        """One connection per logged-in meter, opened one after another (each waits for its
        broker's answer, up to `wait_s`): the embedded broker (amqtt) fails sessions when
        hundreds of clients connect at the same instant."""
        names = [m.meter_id for m in self.meters] if self.logins else ["gtx-sim-fleet"]
        for name in names:
            if stop.is_set():
                return
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
            client.max_inflight_messages_set(1000)
            if name in self.logins:
                client.username_pw_set(name, self.logins[name])
            answered = threading.Event()
            client.on_connect = lambda *args, answered=answered: answered.set()
            client.connect_async(self.mqtt_host, self.mqtt_port)
            client.loop_start()  # reconnects by itself; QoS 1 readings wait for it
            self.clients[name] = client
            answered.wait(wait_s)

    def _client(self, meter_id: str) -> mqtt.Client:
        return self.clients.get(meter_id) or self.clients["gtx-sim-fleet"]

    def read_all(self) -> None:
        """One reading from every meter, now."""
        now = int(time.time())
        interval = max(1, round(self.interval_s))
        with self.physics.lock:
            values = [m.chip.values for m in self.homes]
            snapshot = [
                (v.import_wh, v.export_wh, v.voltage_dv, v.current_ma, v.pf_milli, v.freq_chz)
                for v in values
            ]
        for meter in self.meters:
            meter.seq += 1
        self._save()  # before sending: a restart never reuses a sequence number
        for meter, (imp, exp, volts, amps, pf, hz) in zip(self.meters, snapshot, strict=True):
            raw = encode(
                Reading(meter.meter_id, meter.seq, now, imp, exp, interval, volts, amps, pf, hz)
            )
            self._client(meter.meter_id).publish(
                reading_topic(meter.meter_id), envelope.seal(raw, READING_DOMAIN, meter.key), qos=1
            )
            self.published += 1

    def run(self, stop: threading.Event) -> None:
        self._connect(stop)
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.read_all()
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            for client in self.clients.values():
                client.disconnect()
                client.loop_stop()
