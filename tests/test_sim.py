"""The simulator standing in for hardware: physics-driven emulated chips read by the
unchanged firmware, whose signed registers follow each household's energy."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import simday
from services import Collector, Mosquitto
from simday import registered

from gridtokenx.sim.grid import STEP_S, load_simbench
from gridtokenx.sim.meters import GridMeters
from gridtokenx.sim.run import run
from gridtokenx.wire import envelope
from gridtokenx.wire.reading import READING_DOMAIN, decode

pytestmark = pytest.mark.slow
NOON = 96 * 160 + 44


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
    physics, messages = simday.day(tmp_path, 3, 20)  # 20 s at x4,320: a day from midnight
    seen = simday.signed_readings(messages, registered(tmp_path / "sim" / "meters.tsv"))
    for readings in seen.values():  # the power flow's voltage at the bus
        assert all(2000 <= r.voltage_dv <= 2600 for r in readings)
    simday.assert_registers_follow_the_physics(physics, seen)
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
