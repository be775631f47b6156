"""A day of the simulator's physics read by firmware meters through a real Mosquitto, and
what every test of it checks: each reading signed by its meter's key (meters.tsv, as an
installer registers them), each register pair a state the physics put on the chip, and
the registers only growing. Shared by tests/test_sim.py and tests/test_firmware_linux.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from services import Collector, Mosquitto

from gridtokenx.sim.run import run
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, Reading, decode

GRID = "1-LV-semiurb4--0-sw"
SPEED = 4_320.0  # 20 s of wall clock is a whole day
START = 96 * 160  # a June midnight


def registered(path: Path) -> dict[str, bytes]:
    """meters.tsv: meter id -> public key, as an installer would register them."""
    rows = (line.split("\t") for line in path.read_text().splitlines())
    return {meter_id: bytes.fromhex(public) for meter_id, public, _bus in rows}


def day(directory: Path, households: int, duration: float, **options: Any) -> tuple[Any, Any]:
    """Run `households` firmware meters for `duration` s (no hub: the broker's PUBACK frees
    a reading); (the physics, every message the broker saw)."""
    broker = Mosquitto(directory / "broker").start()
    collector = Collector(broker.port).start()
    try:
        physics = run(
            GRID,
            households,
            SPEED,
            "127.0.0.1",
            broker.port,
            directory / "sim",
            1.0,
            START,
            threading.Event(),
            duration=duration,
            record=True,
            ack=False,
            **options,
        )
    finally:
        collector.stop()
        broker.stop()
    return physics, collector.messages


def signed_readings(messages: Any, keys: dict[str, bytes]) -> dict[str, list[Reading]]:
    """Each meter's readings, every one checked against its meter's key."""
    seen: dict[str, list[Reading]] = {}
    for topic, payload in messages:
        if not topic.endswith("/reading"):
            continue
        raw, signature = envelope.unwrap(payload)
        meter_id = topic.split("/")[3]
        envelope.verify(raw, signature, READING_DOMAIN, keys[meter_id])
        seen.setdefault(meter_id, []).append(decode(raw))
    assert set(seen) == set(keys)
    return seen


def assert_registers_follow_the_physics(physics: Any, seen: dict[str, list[Reading]]) -> None:
    for index, home in enumerate(physics.homes):
        states = {regs[index] for _, _, regs in physics.log}
        states.add((home.base_import, home.base_export))  # before the clock first moved
        published = [(r.import_wh, r.export_wh) for r in seen[home.home.meter_id]]
        assert len(published) >= 3
        # every published register pair is a state the physics put on the chip ...
        assert all(p in states for p in published)
        # ... and they only grow, as energy accumulates
        assert published == sorted(published)
