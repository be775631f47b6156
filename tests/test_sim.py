"""The simulator standing in for hardware: physics-driven emulated chips read by the
unchanged firmware, whose signed registers follow each household's energy."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from services import Collector, Mosquitto

from gridtokenx.sim.grid import STEP_S, load_simbench
from gridtokenx.sim.meters import GridMeters
from gridtokenx.sim.run import run
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, decode

pytestmark = pytest.mark.slow
NOON = 96 * 160 + 44


def registered(path: Path) -> dict[str, bytes]:
    """meters.tsv: meter id -> public key, as an installer would register them."""
    rows = (line.split("\t") for line in path.read_text().splitlines())
    return {meter_id: bytes.fromhex(public) for meter_id, public, _bus in rows}


@pytest.fixture(scope="module")
def grid():  # type: ignore[no-untyped-def]
    return load_simbench()


def test_chip_registers_integrate_the_profile_exactly(grid) -> None:  # type: ignore[no-untyped-def]
    meters = GridMeters.create(grid, len(grid.households), speed=1, start_step=NOON)
    dt = 37.0
    for _ in range(100):  # 3,700 s: across four quarter-hour steps
        meters.advance(dt)
    for m in meters.homes:
        expected_in = expected_out = 0.0
        for k in range(100):
            step = NOON + int(k * dt // STEP_S)
            p = meters.power_w(m.home, step)
            expected_in += max(p, 0) * dt / 3600
            expected_out += max(-p, 0) * dt / 3600
        assert m.imported_wh == pytest.approx(expected_in, rel=1e-12)
        assert m.exported_wh == pytest.approx(expected_out, rel=1e-12)
        assert m.chip.values.import_wh == m.base_import + int(expected_in)
        assert m.chip.values.export_wh == m.base_export + int(expected_out)
    # a household with PV exports at noon in June
    assert any(m.exported_wh > 0 for m in meters.homes if m.home.sgen is not None)


def test_a_day_of_physics_through_the_firmware_fleet(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port).start()
    stop = threading.Event()
    try:
        # 20 s of wall clock at x4,320 is a whole day, from midnight
        physics = run(
            "1-LV-semiurb4--0-sw",
            3,
            4_320.0,
            "127.0.0.1",
            broker.port,
            tmp_path / "sim",
            1.0,
            96 * 160,
            stop,
            duration=20,
            record=True,
            ack=False,  # no hub here to acknowledge: the broker's PUBACK frees a reading
        )
    finally:
        collector.stop()
        broker.stop()
    keys = registered(tmp_path / "sim" / "meters.tsv")
    seen: dict[str, list[tuple[int, int]]] = {}
    for topic, payload in collector.messages:
        if not topic.endswith("/reading"):
            continue
        raw, signature = envelope.unwrap(payload)
        meter_id = topic.split("/")[3]
        envelope.verify(raw, signature, READING_DOMAIN, keys[meter_id])
        r = decode(raw)
        assert 2000 <= r.voltage_dv <= 2600  # the power flow's voltage at the bus
        seen.setdefault(meter_id, []).append((r.import_wh, r.export_wh))
    assert set(seen) == set(keys)
    for index, home in enumerate(physics.homes):
        states = {regs[index] for _, _, regs in physics.log}
        states.add((home.base_import, home.base_export))  # before the clock first moved
        published = seen[home.home.meter_id]
        assert len(published) >= 3
        # every published register pair is a state the physics put on the chip ...
        assert all(p in states for p in published)
        # ... and they only grow, as energy accumulates
        assert published == sorted(published)
    assert np.isfinite(physics.sim_seconds) and physics.sim_seconds >= 0.9 * 86_400


def test_in_process_meters_for_large_n(tmp_path: Path) -> None:
    from gridtokenx.sim.run import build_grid

    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port).start()
    grid = build_grid("1-LV-semiurb5--0-sw", pv_share=0.5, seed=2)
    try:
        physics = run(
            grid,
            100,
            60.0,
            "127.0.0.1",
            broker.port,
            tmp_path / "sim",
            1.0,
            NOON,
            threading.Event(),
            duration=3.5,
            in_process=True,
        )
        collector.wait_for("reading", 300)
    finally:
        collector.stop()
        broker.stop()
    keys = registered(tmp_path / "sim" / "meters.tsv")
    assert len(keys) == 100 and len(set(keys.values())) == 100  # a key each
    states = {h.home.meter_id: h for h in physics.homes}
    for payload in collector.of("reading"):
        raw, signature = envelope.unwrap(payload)
        r = decode(raw)
        envelope.verify(raw, signature, READING_DOMAIN, keys[r.meter_id])
        home = states[r.meter_id]
        assert r.import_wh >= home.base_import and r.import_wh <= home.chip.values.import_wh
