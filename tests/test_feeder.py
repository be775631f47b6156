"""The feeder balance rule (hub/feeder.py, pure) and its adapter in the hub's batches:
a flagged epoch's batch is held, the outbox submits nothing from it on, and the grid
operator's review releases or rejects it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import database
from nacl.signing import SigningKey
from sqlalchemy import select

from gridtokenx.hub import balances, batches, schema
from gridtokenx.hub.balances import FeederError
from gridtokenx.hub.feeder import (
    Energy,
    LossModel,
    Sample,
    Verdict,
    balance,
    register_at,
    suspects,
)
from gridtokenx.hub.ingest import Ingestor
from gridtokenx.hub.outbox import Outbox
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import HubStore, connect
from gridtokenx.wire.envelope import seal
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode
from gridtokenx.wire.topics import reading_topic

EPOCH = 1_800_000  # epoch numbers of 900 s: 1,620,000,000 s
T = EPOCH * 900


def test_losses_grow_with_the_square_of_the_flow() -> None:
    model = LossModel(ppm_per_kw=100, fixed_w=40)
    # 2,500 Wh in 900 s is 10 kW: 100 ppm/kW * 10 kW = 0.1 % of 10 kW = 10 W; + 40 W fixed
    assert model.losses_wh(2_500, 900) == 13  # 50 W for a quarter hour: 12.5 Wh, half up
    assert model.losses_wh(-2_500, 900) == 13  # PV feeding back loses the same
    assert model.losses_wh(5_000, 900) == 20  # 20 kW: 40 W + 40 W for a quarter hour
    assert LossModel(ppm_per_kw=100).losses_wh(2_500, 0) == 0
    assert LossModel(tolerance_wh=20, tolerance_ppm=10_000).tolerance(2_450) == 20 + 25


def test_registers_between_readings_are_interpolated() -> None:
    before, after = Sample(1_000, 10_000, 500), Sample(1_060, 10_060, 530)
    assert register_at(before, after, 1_030) == (10_030, 515)
    assert register_at(before, after, 1_001) == (10_001, 500)  # floor of 500.5
    assert register_at(before, after, 1_000) == (10_000, 500)
    assert register_at(before, None, 1_030) == (10_000, 500)  # nothing after it


def test_a_balanced_window_passes_and_a_lie_is_flagged_with_its_size() -> None:
    model = LossModel(ppm_per_kw=97, fixed_w=0, tolerance_wh=20, tolerance_ppm=10_000)
    homes = {"a": Energy(400, 0), "b": Energy(0, 300), "c": Energy(250, 0)}
    # households' net 350 Wh; the feeder's 2,000 - 1,650 = 350 Wh and 350 Wh in 900 s
    # (1.4 kW) loses 97 ppm * 1.4 * 1,400 W / 1e6 * 0.25 h = 0.05 Wh -> 0
    ok = balance(T, T + 900, homes, Energy(2_000, 1_650), model)
    assert (ok.households_wh, ok.gross_wh, ok.feeder_wh, ok.losses_wh) == (350, 950, 350, 0)
    assert (ok.gap_wh, ok.tolerance_wh, ok.verdict) == (0, 30, Verdict.OK)
    # b reports 120 Wh more export than it fed in: the meters now claim 120 Wh the
    # transformer never carried
    lying = {**homes, "b": Energy(0, 420)}
    flagged = balance(T, T + 900, lying, Energy(2_000, 1_650), model)
    assert (flagged.households_wh, flagged.gap_wh, flagged.tolerance_wh) == (230, 120, 31)
    assert flagged.verdict is Verdict.FEEDER_IMBALANCE and flagged.flagged
    # within the tolerance: 31 Wh of gap is not flagged, 32 Wh is
    assert not balance(T, T + 900, {"b": Energy(0, 1_100)}, Energy(0, 1_069), model).flagged
    assert balance(T, T + 900, {"b": Energy(0, 1_100)}, Energy(0, 1_068), model).flagged


def test_the_meter_whose_export_follows_the_gaps_is_named_first() -> None:
    # b over-reports its export by 20 %: the gap is a sixth of what it reports
    reports = [(600, 300), (900, 200), (300, 500), (0, 400)]  # b's export, c's import
    history = [
        (b // 6, {"b": Energy(0, b), "c": Energy(c, 0), "d": Energy(100, 0)}) for b, c in reports
    ]
    assert suspects(history) == ("b",)
    assert suspects(history, share=0.0)[0] == "b"
    # one window alone: every meter that moved energy explains it as well as any
    assert set(suspects(history[:1])) == {"b", "c", "d"}
    assert suspects([(0, {"b": Energy(0, 600)})]) == ()


# -- the hub adapter -------------------------------------------------------------------


class Meters:
    """Signed readings of a few meters on a simulated clock (the hub's own ingest)."""

    def __init__(self, store: HubStore, ids: list[str]) -> None:
        self.keys = {m: SigningKey.generate() for m in ids}
        self.seq = dict.fromkeys(ids, 0)
        self.registers = {m: [10_000, 0] for m in ids}
        for m, key in self.keys.items():
            rating = 500_000 if m == "feeder" else 23_000
            store.add_meter(m, bytes(key.verify_key), rating, None, MeterStatus.APPROVED)
        self.now = T
        self.ingestor = Ingestor(store, clock=lambda: self.now)

    def read(self, ts: int, energy: dict[str, tuple[int, int]]) -> None:
        """Each meter adds (import, export) Wh and reads at ts."""
        self.now = ts
        messages = []
        for m, (imp, exp) in energy.items():
            self.registers[m][0] += imp
            self.registers[m][1] += exp
            self.seq[m] += 1
            raw = encode(Reading(m, self.seq[m], ts, *self.registers[m], 300, 2300, 0, 990, 5000))
            messages.append((reading_topic(m), seal(raw, READING_DOMAIN, self.keys[m])))
        assert all(d.accepted for d in self.ingestor.ingest(messages))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubStore]:
    with database(request.param, tmp_path) as url:
        engine = connect(url)
        yield HubStore(engine)
        engine.dispose()


def test_a_flagged_epoch_is_held_and_nothing_after_it_is_submitted(store: HubStore) -> None:
    meters = Meters(store, ["a", "b", "feeder"])
    balances.set_feeder(store, "feeder", LossModel(ppm_per_kw=0, tolerance_wh=20))
    key = SigningKey.generate()
    honest = {"a": (100, 0), "b": (0, 50), "feeder": (50, 0)}
    lie = {"a": (100, 0), "b": (0, 150), "feeder": (50, 0)}  # b claims 100 Wh more
    for k in range(3):  # epoch 0: readings at +0, +300, +600 s
        meters.read(T + 300 * k, honest)
    first = batches.build(store, "hub-1", EPOCH, T + 900, key)
    assert first is not None and first.balance is not None
    # the first window starts when every meter has read once, ends at their last reading
    assert (first.balance.t0, first.balance.t1, first.balance.gap_wh) == (T, T + 600, 0)
    for k in range(3, 6):
        meters.read(T + 300 * k, lie if k == 4 else honest)
    second = batches.build(store, "hub-1", EPOCH + 1, T + 1800, key)
    assert second is not None and second.balance is not None
    b = second.balance
    assert (b.t0, b.t1, b.households_wh, b.feeder_wh, b.gap_wh) == (T + 600, T + 1500, 50, 150, 100)
    assert b.verdict is Verdict.FEEDER_IMBALANCE and b.tolerance_wh == 20 + 6  # 1 % of 550
    assert set(b.named) == {"a", "b"}  # two windows, one gap: a's import explains it too
    for k in range(6, 9):
        meters.read(T + 300 * k, honest)
    third = batches.build(store, "hub-1", EPOCH + 2, T + 2700, key)
    assert third is not None and third.balance is not None and not third.balance.flagged

    with store.engine.connect() as c:
        states = dict(c.execute(select(schema.batches.c.epoch, schema.batches.c.state)).all())
    assert states == {EPOCH: "pending", EPOCH + 1: "held", EPOCH + 2: "pending"}
    outbox = Outbox(store, key, "http://127.0.0.1:9", "token")
    assert outbox.pending() == [first.batch_id]  # not the held one, nor any after it
    assert balances.counts(store) == {"ok": 2, "feeder_imbalance": 1, "incomplete": 0, "held": 1}
    shown = balances.recent(store)
    assert [(s["epoch"], s["verdict"], s["gap_wh"], s["batch_state"]) for s in shown] == [
        (EPOCH + 2, "ok", 0, "pending"),
        (EPOCH + 1, "feeder_imbalance", 100, "held"),
        (EPOCH, "ok", 0, "pending"),
    ]

    with pytest.raises(FeederError) as err:
        balances.review(store, EPOCH, release=True)
    assert err.value.code == "not_held"
    with pytest.raises(FeederError) as err:
        balances.review(store, EPOCH + 7, release=True)
    assert err.value.code == "unknown_epoch"
    assert balances.review(store, EPOCH + 1, release=False) == "refused"
    assert outbox.pending() == [first.batch_id, third.batch_id]
    with store.engine.connect() as c:
        row = c.execute(select(schema.batches).where(schema.batches.c.epoch == EPOCH + 1)).one()
        review = c.execute(
            select(schema.balances.c.review).where(schema.balances.c.epoch == EPOCH + 1)
        ).scalar_one()
    assert (row.state, row.last_error, review) == ("refused", "operator_rejected", "rejected")


def test_a_released_batch_goes_out_and_a_silent_meter_holds_the_epoch_until_it_balances(
    store: HubStore,
) -> None:
    meters = Meters(store, ["a", "feeder"])
    balances.set_feeder(store, "feeder", LossModel(ppm_per_kw=0, tolerance_wh=0, tolerance_ppm=0))
    key = SigningKey.generate()
    meters.read(T, {"a": (0, 0), "feeder": (0, 0)})
    meters.read(T + 600, {"a": (10, 0), "feeder": (11, 0)})  # 1 Wh more at the feeder
    built = batches.build(store, "hub-1", EPOCH, T + 900, key)
    assert built is not None and built.balance is not None and built.balance.gap_wh == 1
    assert balances.review(store, EPOCH, release=True) == "pending"
    meters.read(T + 1200, {"feeder": (5, 0)})  # a says nothing this epoch
    quiet = batches.build(store, "hub-1", EPOCH + 1, T + 1800, key)
    assert quiet is not None and quiet.balance is not None
    assert quiet.balance.verdict is Verdict.INCOMPLETE
    assert (quiet.balance.t0, quiet.balance.t1) == (T + 600, T + 600)
    outbox = Outbox(store, key, "http://127.0.0.1:9", "token")
    assert outbox.pending() == [built.batch_id]  # the unbalanced epoch waits
    meters.read(T + 1900, {"a": (6, 0)})  # a's stored readings arrive
    meters.read(T + 2000, {"feeder": (2, 0)})
    later = batches.build(store, "hub-1", EPOCH + 2, T + 2700, key)
    assert later is not None and later.balance is not None
    # the window spans both epochs: from the end of the last complete one; the feeder's
    # registers at T + 1900 are 5 Wh + 700/800 of the next 2 Wh (floor: 1)
    b = later.balance
    assert (b.t0, b.t1, b.households_wh, b.feeder_wh, b.verdict) == (
        T + 600,
        T + 1900,
        6,
        6,
        Verdict.OK,
    )
    assert outbox.pending() == [built.batch_id, quiet.batch_id, later.batch_id]
    with store.engine.connect() as c:
        energies = c.execute(
            select(schema.balances.c.energies).where(schema.balances.c.epoch == EPOCH + 2)
        ).scalar_one()
    assert json.loads(energies) == {"a": [6, 0]}


def test_the_feeder_must_be_a_registered_meter(store: HubStore) -> None:
    with pytest.raises(FeederError) as err:
        balances.set_feeder(store, "nobody", LossModel())
    assert err.value.code == "unknown_meter"
    with pytest.raises(FeederError) as err:
        balances.set_feeder(store, "nobody", LossModel(tolerance_wh=-1))
    assert err.value.code == "invalid_loss_model"
    with store.engine.connect() as c:
        assert c.execute(select(schema.feeder)).first() is None


def test_the_operator_sees_the_held_epoch_on_the_page_in_json_and_metrics(
    store: HubStore, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from gridtokenx.hub.cli import app as hub_cli
    from gridtokenx.hub.web import HubContext, create_app

    meters = Meters(store, ["a", "feeder"])
    url = str(store.engine.url)
    runner = CliRunner()
    done = runner.invoke(
        hub_cli, ["feeder", "set", "feeder", "--tolerance-wh", "5", "--database", url]
    )
    assert done.exit_code == 0, done.output
    refused = runner.invoke(hub_cli, ["feeder", "set", "nobody", "--database", url])
    assert refused.exit_code == 2 and "unknown_meter" in refused.output
    meters.read(T, {"a": (0, 0), "feeder": (0, 0)})
    meters.read(T + 600, {"a": (0, 90), "feeder": (0, 20)})  # a claims 70 Wh too much
    key = SigningKey.generate()
    assert batches.build(store, "hub-1", EPOCH, T + 900, key) is not None

    client = TestClient(create_app(HubContext(store, "hub-1", installer_token="s3cret")))
    page = client.get("/feeder")
    assert page.status_code == 200
    assert "feeder_imbalance" in page.text and "70 Wh" in page.text and "held" in page.text
    assert "<td>a</td>" not in page.text  # the neighbours see how many are named, not who
    assert client.get("/api/feeder/balances").status_code == 401
    wrong = client.get("/api/feeder/balances", headers={"Authorization": "Bearer s3cre"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"
    operator = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/feeder/balances", headers=operator).json()[0] == {
        "epoch": EPOCH,
        "t0": T,
        "t1": T + 600,
        "verdict": "feeder_imbalance",
        "gap_wh": 70,
        "tolerance_wh": 6,  # 5 Wh + 1 % of 90 Wh
        "households_wh": -90,
        "feeder_wh": -20,
        "losses_wh": 0,
        "named": ["a"],
        "batch_state": "held",
        "review": None,
    }
    metrics = client.get("/metrics").text
    assert "gtx_hub_batches_held 1.0" in metrics
    assert 'gtx_hub_feeder_balances{verdict="feeder_imbalance"} 1.0' in metrics
    assert "gtx_hub_feeder_gap_wh 70.0" in metrics

    shown = runner.invoke(hub_cli, ["feeder", "show", "--database", url])
    assert shown.output.split("\n")[0] == (
        f"{EPOCH}\tfeeder_imbalance\tgap 70 Wh\ttolerance 6 Wh\ta\theld"
    )
    again = runner.invoke(hub_cli, ["feeder", "release", str(EPOCH + 1), "--database", url])
    assert again.exit_code == 2 and "unknown_epoch" in again.output
    released = runner.invoke(hub_cli, ["feeder", "release", str(EPOCH), "--database", url])
    assert released.output == f"batch of epoch {EPOCH}: pending\n"


def test_until_the_feeder_meter_reads_the_epochs_are_held_as_incomplete(store: HubStore) -> None:
    meters = Meters(store, ["a", "feeder"])
    balances.set_feeder(store, "feeder", LossModel(ppm_per_kw=0))
    key = SigningKey.generate()
    meters.read(T, {"a": (0, 0)})
    first = batches.build(store, "hub-1", EPOCH, T + 900, key)
    assert first is not None and first.balance is not None
    assert (first.balance.verdict, first.balance.t0, first.balance.t1) == (Verdict.INCOMPLETE, 0, 0)
    meters.read(T + 1000, {"a": (40, 0), "feeder": (0, 0)})  # the feeder's first reading
    meters.read(T + 1600, {"a": (30, 0), "feeder": (30, 0)})
    second = batches.build(store, "hub-1", EPOCH + 1, T + 1800, key)
    assert second is not None and second.balance is not None
    # the first window starts at the feeder's first reading, not at a's
    b = second.balance
    assert (b.verdict, b.t0, b.t1, b.households_wh, b.feeder_wh) == (
        Verdict.OK,
        T + 1000,
        T + 1600,
        30,
        30,
    )
    outbox = Outbox(store, key, "http://127.0.0.1:9", "token")
    assert outbox.pending() == [first.batch_id, second.batch_id]
