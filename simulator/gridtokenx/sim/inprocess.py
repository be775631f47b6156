"""The lighter meter fleet for large N: one Python thread plays every meter.

Each meter still has its own Ed25519 key from OS randomness, counts its own sequence and
signs readings in the wire format (gridtokenx.wire, the spec's CPython side, which passes
the same vectors as the firmware). It reads the emulated chip's registers directly instead
of over Modbus, and publishes through one MQTT connection.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey
from paho.mqtt.enums import CallbackAPIVersion

from gridtokenx.sim.meters import GridMeters
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic


@dataclass
class VirtualMeter:
    meter_id: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0


class InProcessFleet:
    def __init__(
        self, physics: GridMeters, mqtt_host: str, mqtt_port: int, interval_s: float
    ) -> None:
        self.physics = physics
        self.interval_s = interval_s
        self.meters = [VirtualMeter(m.home.meter_id) for m in physics.homes]
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gtx-sim-fleet")
        self.client.max_inflight_messages_set(1000)
        self.client.connect(mqtt_host, mqtt_port)
        self.published = 0

    def write_keys(self, path: Path) -> None:
        """meter id, public key, bus: what an installer registers at the hub."""
        with path.open("w") as f:
            for meter, home in zip(self.meters, self.physics.homes, strict=True):
                f.write(f"{meter.meter_id}\t{bytes(meter.key.verify_key).hex()}\t{home.home.bus}\n")

    def read_all(self) -> None:
        """One reading from every meter, now."""
        now = int(time.time())
        interval = max(1, round(self.interval_s))
        with self.physics.lock:
            values = [m.chip.values for m in self.physics.homes]
            snapshot = [
                (v.import_wh, v.export_wh, v.voltage_dv, v.current_ma, v.pf_milli, v.freq_chz)
                for v in values
            ]
        for meter, (imp, exp, volts, amps, pf, hz) in zip(self.meters, snapshot, strict=True):
            meter.seq += 1
            raw = encode(
                Reading(meter.meter_id, meter.seq, now, imp, exp, interval, volts, amps, pf, hz)
            )
            self.client.publish(
                reading_topic(meter.meter_id), envelope.seal(raw, READING_DOMAIN, meter.key), qos=1
            )
            self.published += 1

    def run(self, stop: threading.Event) -> None:
        self.client.loop_start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                self.read_all()
                stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        finally:
            self.client.loop_stop()
            self.client.disconnect()
