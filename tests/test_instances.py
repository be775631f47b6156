"""Several `gridtokenx platform run` processes on one PostgreSQL (and one data directory:
keystore, embedded chain log) serve one market: every instance takes orders, exactly one
(the holder of the advisory lock) is the sequencer that clears and settles, and another
takes over when it is killed -9. Real processes, real PostgreSQL, the embedded chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from databases import database
from platform_process import PlatformProcess, audit, mint_grx, wait_for
from sqlalchemy import create_engine, select

from gridtokenx.adapters import books
from gridtokenx.adapters.tables import epochs, market_orders

EPOCH_S = 20.0
SEQUENCER = "this instance is the market sequencer"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[str]:
    with database("postgresql", tmp_path) as url:
        yield url


def early_in_an_epoch(p: PlatformProcess) -> int:
    """Wait for an epoch with most of its time left, so the orders below all go into it."""

    def fresh() -> int | None:
        now = p.client.get("/api/v1/market/epochs/current").json()
        return int(now["epoch"]) if now["seconds_left"] > EPOCH_S - 6 else None

    return int(wait_for("a fresh epoch", fresh, timeout=EPOCH_S * 3))


@contextmanager
def two_instances(
    data: Path, pg: str
) -> Iterator[tuple[PlatformProcess, PlatformProcess, dict[str, Any], dict[str, Any], int]]:
    """Instance a (the sequencer) and b on one database; a seller with 5,000 Wh signed up on
    a, a buyer with 50 THB on b; early in an epoch. Both instances end after (one a test
    killed already has nothing left to stop)."""
    a = PlatformProcess(data, "a", pg, EPOCH_S).wait_ready()
    b = None
    try:
        wait_for("a to be the sequencer", lambda: SEQUENCER in a.output())
        b = PlatformProcess(data, "b", pg, EPOCH_S).wait_ready()
        seller, buyer = a.signup("sun@example.org"), b.signup("moon@example.org")
        mint_grx(data, pg, seller["wallet"], 5_000)
        b.top_up(buyer, 50_000_000)
        yield a, b, seller, buyer, early_in_an_epoch(b)
    finally:
        if b is not None:
            b.stop()
        a.stop()


def place(p: PlatformProcess, user: dict[str, Any], side: str, wh: int, price: int) -> Any:
    body = {"side": side, "quantity_wh": wh, "price": price}
    r = p.client.post("/api/v1/orders", headers=user["auth"], json=body)
    assert r.status_code == 201, r.text
    return r.json()


def settle_memos(data: Path, epoch: int) -> list[str]:
    """The settlement memos of `epoch` on the chain (one per part; twice = paid twice)."""
    from gridtokenx.ledger.embedded import ChainReader

    reader = ChainReader(data / "chain")
    return [m for m in reader.memo_index() if m.startswith(f"gtx1 settle {epoch} ")]


def cleared(url: str, epoch: int) -> dict[str, Any] | None:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            row = c.execute(select(epochs).where(epochs.c.epoch == epoch)).first()
            if row is None or row.state != "settled":
                return None
            trades = c.execute(select(books.trades).where(books.trades.c.epoch == epoch)).all()
            statuses = {
                r.order_id: (r.status, r.filled_wh)
                for r in c.execute(
                    select(
                        market_orders.c.order_id, market_orders.c.status, market_orders.c.filled_wh
                    ).where(market_orders.c.epoch == epoch)
                ).all()
            }
            refunds = dict(
                c.execute(
                    select(books.refunds.c.order_id, books.refunds.c.amount).where(
                        books.refunds.c.kind == "cancel"
                    )
                ).all()
            )
        return {"row": row, "trades": trades, "statuses": statuses, "refunds": refunds}
    finally:
        engine.dispose()


def test_two_instances_take_orders_and_the_epoch_clears_and_settles_once(
    tmp_path: Path, pg: str
) -> None:
    data = tmp_path / "platform"
    with two_instances(data, pg) as (a, b, seller, buyer, epoch):
        # two sells on the sequencer, two buys on the other instance
        orders = [
            place(a, seller, "sell", 1_000, 3_000_000),
            place(b, buyer, "buy", 1_500, 5_000_000),
            place(a, seller, "sell", 1_000, 3_500_000),
            place(b, buyer, "buy", 400, 4_000_000),
        ]
        # two more, cancelled: one on the instance that took it, one on the sequencer
        asked = place(b, buyer, "buy", 100, 4_500_000)
        gone = place(b, buyer, "buy", 100, 4_500_000)
        r = b.client.delete(f"/api/v1/orders/{asked['order_id']}", headers=buyer["auth"])
        assert r.status_code == 200 and r.json()["status"] == "cancelling", r.text
        r = a.client.delete(f"/api/v1/orders/{gone['order_id']}", headers=buyer["auth"])
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert {o["epoch"] for o in [*orders, asked, gone]} == {epoch}
        assert [o["seq"] for o in orders[1::2]] == [0, 0]  # waiting for the sequencer
        done = wait_for("the epoch to settle", lambda: cleared(pg, epoch), timeout=EPOCH_S * 4)
        # uniform price: 2,000 Wh offered up to 3.5 THB/kWh, 1,900 Wh bid from 4 THB/kWh
        assert done["row"].volume_wh == 1_900
        assert done["row"].clearing_price is not None
        assert sum(t.wh for t in done["trades"]) == 1_900
        assert {t.buy_id for t in done["trades"]} == {orders[1]["order_id"], orders[3]["order_id"]}
        assert done["statuses"][orders[1]["order_id"]] == ("filled", 1_500)
        assert done["statuses"][orders[3]["order_id"]] == ("filled", 400)
        assert done["statuses"][asked["order_id"]] == ("cancelled", 0)
        assert done["statuses"][gone["order_id"]] == ("cancelled", 0)
        assert done["refunds"] == {asked["order_id"]: 450_000, gone["order_id"]: 450_000}
        assert len(settle_memos(data, epoch)) == len(json.loads(done["row"].transactions))
        assert SEQUENCER not in b.output()  # exactly one sequencer
        assert b.wallet(buyer)["grx_wh"] == 1_900
    report = audit(data, pg)
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["checked"]["settlements"] >= 1


def test_the_sequencer_killed_mid_epoch_is_replaced_and_the_audit_is_clean(
    tmp_path: Path, pg: str
) -> None:
    data = tmp_path / "platform"
    with two_instances(data, pg) as (a, b, seller, buyer, epoch):
        sell = place(a, seller, "sell", 2_000, 3_000_000)
        buy = place(b, buyer, "buy", 800, 4_000_000)
        a.kill()  # kill -9, mid-epoch: its session lock goes with its connection
        wait_for("b to take over", lambda: SEQUENCER in b.output(), timeout=60)
        late = place(b, buyer, "buy", 700, 4_500_000)  # after the takeover, same epoch
        assert late["epoch"] == epoch
        done = wait_for("the epoch to settle", lambda: cleared(pg, epoch), timeout=EPOCH_S * 4)
        assert done["row"].volume_wh == 1_500
        assert {t.sell_id for t in done["trades"]} == {sell["order_id"]}
        assert {t.buy_id for t in done["trades"]} == {buy["order_id"], late["order_id"]}
        # good for the epoch: its unsold rest expired with it
        assert done["statuses"][sell["order_id"]] == ("expired", 1_500)
        assert len(settle_memos(data, epoch)) == len(json.loads(done["row"].transactions))
        # the seller's unsold 500 Wh came back from escrow at the settlement
        assert b.wallet(seller)["grx_wh"] == 5_000 - 1_500
    report = audit(data, pg)
    assert report.returncode == 0, report.stdout + report.stderr
