"""The sequencer and an instance that is not (two `Trading`s on one PostgreSQL and one data
directory, in one process, with one settable clock) under CDA: orders and cancels taken by
the other instance are entered and applied by the sequencer in the order they were made,
their matches persisted and settled once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import database
from platform_site import EPOCH_S, Clock, Site, fund, signup
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gridtokenx.adapters.tables import market_executions, market_orders
from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism
from gridtokenx.market.errors import OrderRejected
from gridtokenx.services.exchange import Exchange
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

SELL = {"side": "sell", "quantity_wh": 1_000, "price": 3_000_000}


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Trading, Clock]]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database("postgresql", tmp_path) as url:
        clock = Clock()
        leader = Site(tmp_path / "p", url, clock, mechanism=Mechanism.CDA)
        other_platform = Platform(tmp_path / "p", url)
        config = MarketConfig(breaker_bps=NO_BREAKER, mechanism=Mechanism.CDA)
        other = Trading(other_platform, config, EPOCH_S, clock, sequencer=False)
        yield leader, other, clock
        other_platform.ledger.close()  # type: ignore[attr-defined]
        other_platform.books.dispose()
        leader.close()


def row(s: Site, order_id: str) -> tuple[int, int, str]:
    with s.platform.books.connect() as c:
        r = c.execute(select(market_orders).where(market_orders.c.order_id == order_id)).one()
    return r.seq, r.filled_wh, r.status


def test_orders_and_cancels_from_another_instance_go_through_the_sequencer(
    pair: tuple[Site, Trading, Clock],
) -> None:
    leader, other, clock = pair
    seller, buyer = signup(leader.client, "s@x.org"), signup(leader.client, "b@x.org", "consumer")
    fund(leader, seller, grx=1_000)
    fund(leader, buyer, thb=10_000_000)
    sell: dict[str, Any] = other.place(seller["user_id"], **SELL)
    assert (sell["seq"], sell["status"]) == (0, "open")  # taken, not yet in the book
    assert row(leader, sell["order_id"]) == (0, 0, "open")
    buy = leader.trading.place(buyer["user_id"], "buy", 600, 4_000_000)
    # the sequencer entered the earlier sell first, so the buy matched it at once
    assert (buy["filled_wh"], buy["status"]) == (600, "filled")
    assert row(leader, sell["order_id"])[1:] == (600, "partially_filled")
    # the rest cancelled on the other instance: asked there, applied by the sequencer
    assert other.cancel(seller["user_id"], sell["order_id"])["status"] == "cancelling"
    leader.trading.tick()
    assert row(leader, sell["order_id"])[1:] == (600, "cancelled")
    assert leader.trading.market.depth() == {"*": {"bids": [], "asks": []}}
    epoch = leader.trading.market.epoch
    clock.now += EPOCH_S
    assert leader.trading.tick() == [epoch]
    with leader.platform.books.connect() as c:
        executions = c.execute(
            select(market_executions.c.quantity_wh).where(market_executions.c.epoch == epoch)
        ).all()
    assert [e.quantity_wh for e in executions] == [600]
    wallet = leader.client.get("/api/v1/wallet", headers=seller["auth"]).json()
    assert wallet["grx_wh"] == 400  # the cancelled rest came back
    assert wallet["thb_micro"] == 1_800_000 - 18_000
    # the other instance follows: the open epoch moved on with the sequencer
    other.follow()
    assert other.market.epoch == leader.trading.market.epoch == epoch + 1


def test_an_order_from_another_instance_the_halted_book_refuses_is_cancelled_and_refunded(
    pair: tuple[Site, Trading, Clock],
) -> None:
    """The sequencer's book halted (a breaker trip is not persisted, so the other instance
    still takes orders): the sequencer cancels what it cannot enter and gives the escrow
    back; its tick never raises."""
    leader, other, _clock = pair
    seller = signup(leader.client, "s@x.org")
    fund(leader, seller, grx=1_000)
    leader.trading.tick()
    leader.trading.market.halted = "price moved more than 10% within 60 s"
    sell: dict[str, Any] = other.place(seller["user_id"], **SELL)
    assert row(leader, sell["order_id"]) == (0, 0, "open")
    assert leader.trading.tick() == []
    assert row(leader, sell["order_id"]) == (0, 0, "cancelled")
    wallet = leader.client.get("/api/v1/wallet", headers=seller["auth"]).json()
    assert wallet["grx_wh"] == 1_000
    assert leader.trading.tick() == []  # and again: nothing left to enter


def test_an_order_checked_against_an_epoch_that_closes_meanwhile_goes_into_the_next(
    pair: tuple[Site, Trading, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other instance checks a batch against the open epoch; should the sequencer move
    it before the batch's transaction reads it (made to happen here, between the checks and
    the write), nothing is placed in the old epoch and the batch is placed again, once,
    in the new one. Should it move again meanwhile, the order answers `epoch_moved` (409)
    with no row and no escrow."""
    leader, other, _clock = pair
    seller = signup(leader.client, "s@x.org")
    fund(leader, seller, grx=2_000)
    leader.trading.tick()
    epoch = leader.trading.market.epoch
    checked = other._owners_market
    moves = [epoch + 1]

    def then_moved(owners: list[str]) -> Any:
        market = checked(owners)
        if moves:
            leader.trading._set_open_epoch(moves.pop(0))
        return market

    monkeypatch.setattr(other, "_owners_market", then_moved)
    placed = other.place(seller["user_id"], **SELL)
    assert (placed["epoch"], placed["seq"], placed["status"]) == (epoch + 1, 0, "open")
    with leader.platform.books.connect() as c:
        rows = c.execute(select(market_orders.c.order_id, market_orders.c.epoch)).all()
    assert [tuple(r) for r in rows] == [(placed["order_id"], epoch + 1)]
    wallet = leader.client.get("/api/v1/wallet", headers=seller["auth"]).json()
    assert wallet["grx_wh"] == 1_000
    moves[:] = [epoch + 2, epoch + 3]  # moved under the first try and under the second
    with pytest.raises(OrderRejected) as err:
        other.place(seller["user_id"], **SELL)
    assert err.value.code == "epoch_moved"
    with leader.platform.books.connect() as c:
        assert c.execute(select(func.count()).select_from(market_orders)).scalar() == 1
    wallet = leader.client.get("/api/v1/wallet", headers=seller["auth"]).json()
    assert wallet["grx_wh"] == 1_000


def test_orders_from_another_instance_are_written_at_once_and_a_failed_write_reloads_the_book(
    pair: tuple[Site, Trading, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sequencer enters the other instance's orders in the order placed and writes
    them in one transaction (their rows as the book left them after all of them); if that
    write fails, its book is read again from the database, so each order is in it once."""
    leader, other, clock = pair
    s1, s2 = signup(leader.client, "s1@x.org"), signup(leader.client, "s2@x.org")
    buyer = signup(leader.client, "b@x.org", "consumer")
    fund(leader, s1, grx=1_000)
    fund(leader, s2, grx=1_000)
    fund(leader, buyer, thb=10_000_000)
    first = other.place(s1["user_id"], **SELL)
    second = other.place(s2["user_id"], "sell", 1_000, 3_500_000)
    buy = other.place(buyer["user_id"], "buy", 1_500, 4_000_000)
    ids = [first["order_id"], second["order_id"], buy["order_id"]]
    assert [r["seq"] for r in (first, second, buy)] == [0, 0, 0]
    written: list[list[str]] = []
    persist_many = Exchange.persist_many

    def fails_once(self: Exchange, c: Any, entered: Any) -> None:
        written.append([e.order.id for e in entered])
        if len(written) == 1:
            raise OperationalError("UPDATE market_orders", {}, Exception("connection lost"))
        persist_many(self, c, entered)

    monkeypatch.setattr(Exchange, "persist_many", fails_once)
    with pytest.raises(OperationalError):
        leader.trading.tick()
    # the failed write, then the book read again (entering them again) and written once
    assert written == [ids, ids]
    assert [row(leader, o) for o in ids] == [
        (1, 1_000, "filled"),
        (2, 500, "partially_filled"),
        (3, 1_500, "filled"),
    ]
    book = leader.trading.market
    assert [book.order(o) is not None for o in ids] == [True, True, True]
    assert leader.trading.tick() == []
    assert written == [ids, ids]  # nothing left to enter
    epoch = book.epoch
    clock.now += EPOCH_S
    assert leader.trading.tick() == [epoch]
    with leader.platform.books.connect() as c:
        executions = c.execute(
            select(market_executions.c.quantity_wh, market_executions.c.price)
            .where(market_executions.c.epoch == epoch)
            .order_by(market_executions.c.idx)
        ).all()
    assert [tuple(e) for e in executions] == [(1_000, 3_000_000), (500, 3_500_000)]
    wallet = leader.client.get("/api/v1/wallet", headers=s2["auth"]).json()
    assert wallet["grx_wh"] == 500  # the unsold rest back at the close
