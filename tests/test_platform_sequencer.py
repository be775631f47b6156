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
from sqlalchemy import select

from gridtokenx.adapters.tables import market_executions, market_orders
from gridtokenx.market.config import NO_BREAKER, MarketConfig, Mechanism
from gridtokenx.market.errors import OrderRejected
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


def test_an_order_checked_against_an_epoch_that_closes_meanwhile_is_not_placed(
    pair: tuple[Site, Trading, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other instance checks a batch against the open epoch; should the sequencer move
    it before the batch's transaction reads it (made to happen here, between the checks and
    the write), nothing is placed: `epoch_moved`, no row, no escrow."""
    leader, other, _clock = pair
    seller = signup(leader.client, "s@x.org")
    fund(leader, seller, grx=1_000)
    leader.trading.tick()
    epoch = leader.trading.market.epoch
    checked = other._owners_market

    def then_moved(owners: list[str]) -> Any:
        market = checked(owners)
        leader.trading._set_open_epoch(epoch + 1)
        return market

    monkeypatch.setattr(other, "_owners_market", then_moved)
    with pytest.raises(OrderRejected) as err:
        other.place(seller["user_id"], **SELL)
    assert err.value.code == "epoch_moved"
    with leader.platform.books.connect() as c:
        assert c.execute(select(market_orders.c.order_id)).all() == []
    wallet = leader.client.get("/api/v1/wallet", headers=seller["auth"]).json()
    assert wallet["grx_wh"] == 1_000
