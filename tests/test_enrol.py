"""Batch enrolment (what `gridtokenx up` does for its households) and the in-process meters
it runs beyond the firmware ones: registered approved with their own keys, one password each
that the broker's files accept, a key mismatch refused without a change, and keys and
sequence numbers kept across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mqtt_auth import AuthAmqtt, login
from nacl.signing import SigningKey

from gridtokenx.hub import credentials
from gridtokenx.hub.enrol import Enrolment, enrol
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore, RegistrationError, connect
from gridtokenx.sim.devices import EmulatedChip
from gridtokenx.sim.grid import Grid, Household
from gridtokenx.sim.inprocess import InProcessFleet
from gridtokenx.sim.meters import GridMeters, MeteredHousehold
from gridtokenx.wire.topics import reading_topic


def _key() -> bytes:
    return bytes(SigningKey.generate().verify_key)


def test_enrol_registers_approved_and_issues_one_login_each(tmp_path: Path) -> None:
    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    keys = {f"hh-{k:03d}": _key() for k in range(1, 61)}
    batch = [Enrolment(m, key, 23_000, f"bus {n}") for n, (m, key) in enumerate(keys.items())]
    auth = tmp_path / "auth"
    passwords = enrol(store, batch, auth)
    meters = store.meters()
    assert [(m.meter_id, m.public_key, m.status, m.rated_power_w) for m in meters] == [
        (m, key, MeterStatus.APPROVED, 23_000) for m, key in keys.items()
    ]
    assert meters[5].household == "bus 5"
    assert sorted(passwords) == sorted(keys) and len(set(passwords.values())) == 60
    rules = credentials.parse((auth / "passwd").read_text(), (auth / "acl").read_text())
    assert sorted(rules.hashes) == sorted(keys)
    assert credentials.verify_password(passwords["hh-007"], rules.hashes["hh-007"])
    assert (auth / "passwd").stat().st_mode & 0o777 == 0o600
    broker = AuthAmqtt(auth)
    broker.start()
    try:
        assert login(broker.port, "hh-007", passwords["hh-007"]) is True
        assert login(broker.port, "hh-007", passwords["hh-008"]) is False
        # a second start: the same meters, new passwords; the old ones stop working
        again = enrol(store, batch, auth)
        assert len(store.meters()) == 60
        assert again["hh-007"] != passwords["hh-007"]
        assert login(broker.port, "hh-007", again["hh-007"], name="p2") is True
        assert login(broker.port, "hh-007", passwords["hh-007"], name="p3") is False
    finally:
        broker.stop()
    # a meter already registered with another key: refused, nothing changed
    before = (auth / "passwd").read_text()
    with pytest.raises(RegistrationError) as refused:
        enrol(store, [Enrolment("hh-999", _key()), Enrolment("hh-001", _key())], auth)
    assert refused.value.code == "key_mismatch"
    assert len(store.meters()) == 60 and (auth / "passwd").read_text() == before
    store.engine.dispose()


def _physics(n: int) -> GridMeters:
    homes = [
        MeteredHousehold(
            Household(f"hh-{k:03d}", k, None, None, "feeder", 0.0, 0.0),
            EmulatedChip("pzem004t", unit=k),
            base_import=1_000 * k,
        )
        for k in range(1, n + 1)
    ]
    for h in homes:
        h.chip.update(import_wh=h.base_import, voltage_dv=2300, pf_milli=990, freq_chz=5000)
    none = np.zeros((1, 0))
    return GridMeters(Grid("test", None, [h.home for h in homes], none, none, none), homes, 1.0, 0)


def test_in_process_meters_keep_their_keys_and_sequence_across_a_restart(
    tmp_path: Path,
) -> None:
    physics = _physics(3)
    state = tmp_path / "inprocess-meters.json"
    published: list[tuple[str, bytes]] = []

    class Recorder:
        def publish(self, topic: str, payload: bytes, qos: int) -> None:
            published.append((topic, payload))

    first = InProcessFleet(physics, "127.0.0.1", 1, 10, physics.homes[1:], state)
    assert [m.meter_id for m in first.meters] == ["hh-002", "hh-003"]
    assert state.stat().st_mode & 0o777 == 0o600
    first.clients["gtx-sim-fleet"] = Recorder()  # type: ignore[assignment]
    first.read_all()
    first.read_all()
    keys = [m.public_key for m in first.meters]
    second = InProcessFleet(physics, "127.0.0.1", 1, 10, physics.homes[1:], state)
    assert [m.public_key for m in second.meters] == keys
    assert [m.seq for m in second.meters] == [2, 2]  # the next reading is sequence 3
    kept = json.loads(state.read_text())
    assert sorted(kept) == ["hh-002", "hh-003"] and kept["hh-002"]["seq"] == 2
    assert [topic for topic, _ in published] == [
        reading_topic("hh-002"),
        reading_topic("hh-003"),
    ] * 2


def test_up_refuses_more_households_than_its_grid_has(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gridtokenx", "up", "--meters", "42", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: the grid 1-LV-semiurb4--0-sw has 41 households: --meters at most 41, "
        "or a larger grid with --grid (1-LV-rural3--0-sw has 118)"
    )


def test_the_enrol_benchmark_registers_both_ways() -> None:
    from gridtokenx.hub import enrolbench

    result = enrolbench.run(2)
    assert sorted(result) == ["batch_s", "load_average_1m", "meters", "process_per_meter_s"]
    assert result["meters"] == 2
