"""The feeder balance against the simulator's physics: 12 households of the default
SimBench grid with pvlib PV and batteries, a feeder meter following the transformer's flow
from the power flow (losses included), all signed and ingested by the hub's own rules,
store and batches on a simulated clock."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nacl.signing import SigningKey
from sqlalchemy import select

from gridtokenx.hub import balances, batches, schema
from gridtokenx.hub.feeder import Balance, LossModel, Verdict
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.outbox import Outbox
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.sim.feeder import SignedNeighbourhood, neighbourhood, transformer_w
from gridtokenx.sim.grid import Grid, load_simbench
from gridtokenx.sim.households import equip

pytestmark = pytest.mark.slow
JUNE_9 = 96 * 160  # midnight in Bangkok, SimBench step
HOUSEHOLDS = 12


@pytest.fixture(scope="module")
def grid() -> Grid:
    equipped, _ = equip(load_simbench())
    return neighbourhood(equipped, HOUSEHOLDS)


def test_the_feeder_chip_follows_the_transformer_with_its_losses(grid: Grid) -> None:
    flow = transformer_w(grid, JUNE_9, 96)
    households = grid.net_w[JUNE_9 : JUNE_9 + 96].sum(axis=1)
    losses = flow - households
    assert (losses > 0).all()  # the cables always lose something
    assert (losses < 0.01 * np.abs(grid.net_w[JUNE_9 : JUNE_9 + 96]).sum(axis=1) + 1).all()
    hood = SignedNeighbourhood.create(grid, JUNE_9, 96)
    for _ in range(4):
        hood.epoch()
    feeder = hood.meters.feeder
    assert feeder is not None
    expected = sum(max(p, 0) for p in flow[:4]) * 900 / 3600
    assert feeder.imported_wh == pytest.approx(expected, rel=1e-9)
    assert feeder.chip.values.import_wh == feeder.base_import + int(expected)


def hub_over(hood: SignedNeighbourhood, epochs: int, tmp: Path) -> tuple[HubStore, list[Balance]]:
    """Register the neighbourhood's meters, then ingest and batch epoch by epoch."""
    store = HubStore(connect(f"sqlite:///{tmp / 'hub.db'}"))
    for meter_id in hood.meter_ids:
        rating = 500_000 if meter_id.startswith("feeder") else 23_000
        key = bytes(hood.keys[meter_id].verify_key)
        store.add_meter(meter_id, key, rating, None, MeterStatus.APPROVED)
    balances.set_feeder(store, "feeder-001", LossModel())
    ingestor = Ingestor(store, clock=lambda: hood.now - 1)  # received within the epoch
    key = SigningKey.generate()
    found = []
    for _ in range(epochs):
        epoch, messages = hood.epoch()
        assert all(d.accepted for d in ingestor.ingest(messages))
        built = batches.build(store, "hub-1", epoch, (epoch + 1) * 900, key)
        assert built is not None and built.balance is not None
        found.append(built.balance)
    return store, found


def test_no_false_alarm_over_a_week_of_real_profiles(grid: Grid, tmp_path: Path) -> None:
    hood = SignedNeighbourhood.create(grid, JUNE_9, 7 * 96)
    store, found = hub_over(hood, 7 * 96, tmp_path)
    assert [b.verdict for b in found] == [Verdict.OK] * (7 * 96)
    assert max(abs(b.gap_wh) - b.tolerance_wh for b in found) < 0
    assert len(Outbox(store, SigningKey.generate(), "http://127.0.0.1:9", "-").pending()) == 7 * 96


def test_a_meter_over_reporting_its_export_by_20_percent_is_caught(
    grid: Grid, tmp_path: Path
) -> None:
    start = JUNE_9 + 40  # 10:00, the sun up: the lie starts with the simulation
    day = grid.net_w[start : start + 96]
    culprit_index = int(np.argmax(np.clip(-day, 0, None).sum(axis=0)))  # the biggest exporter
    culprit = grid.households[culprit_index].meter_id
    hood = SignedNeighbourhood.create(grid, start, 96)
    hood.meters.homes[culprit_index].over_report = 0.2
    store, found = hub_over(hood, 96, tmp_path)

    with store.engine.connect() as c:
        rows = c.execute(
            select(schema.balances.c.energies, schema.batches.c.state)
            .join(schema.batches, schema.batches.c.epoch == schema.balances.c.epoch)
            .order_by(schema.balances.c.epoch)
        ).all()
    reported = [json.loads(row.energies)[culprit][1] for row in rows]
    lies = [r - r / 1.2 for r in reported]  # what it reported beyond what it exported
    flagged = [b for b in found if b.flagged]
    assert found[0].flagged and len(flagged) >= 20
    for b, lie, row in zip(found, lies, rows, strict=True):
        # the gap is the lie, up to the balance's own noise (below its tolerance)
        assert abs(b.gap_wh - lie) < b.tolerance_wh
        if lie > 2 * b.tolerance_wh:
            assert b.flagged
        if lie == 0:
            assert not b.flagged
        if b.flagged:
            assert row.state == "held" and b.gap_wh > 0
            assert culprit in b.named
    assert flagged[-1].named[0] == culprit
    assert len(flagged[-1].named) < len(flagged[0].named) == HOUSEHOLDS
    # nothing is submitted: the first epoch is held, and no batch after a held one goes out
    assert Outbox(store, SigningKey.generate(), "http://127.0.0.1:9", "-").pending() == []
    assert balances.counts(store)["held"] == len(flagged)
