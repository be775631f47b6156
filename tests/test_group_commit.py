"""Group commit of order placements (SQLite, the embedded ledger): escrows packed into as
few ledger transactions as fit, one bad order failing alone, a batch's orders written and
audited in one transaction."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from platform_site import Clock, Site, fund, signup
from sqlalchemy import select

from gridtokenx import auditlog
from gridtokenx.adapters import books
from gridtokenx.adapters.tables import audit_log, market_orders
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.market.errors import OrderRejected
from gridtokenx.services.trading import order_id


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path, None, Clock())
    yield s
    s.close()


def escrow_signatures(s: Site) -> dict[str, str]:
    """order id -> the signature of the transaction that escrowed it."""
    return {
        text.split(" ")[2]: signature
        for text, signature in s.platform.ledger.memo_index().items()
        if text.startswith(st.ESCROW + " ")
    }


def test_escrows_pack_five_owners_a_transaction_and_a_refused_one_fails_alone(
    site: Site,
) -> None:
    users = [signup(site.client, f"p{k}@x.org") for k in range(7)]
    for u in users:
        fund(site, u, thb=1_000_000)
    dep = site.platform.dep
    holders = [site.trading.wallets[u["user_id"]] for u in users]
    escrows = [st.Escrow(h, order_id(), "thb", 300_000, st.owner_key(h)) for h in holders]
    e = escrows[2]
    escrows[2] = st.Escrow(e.holder, e.order_id, "thb", 5_000_000, e.owner)  # too much
    landed = st.lock_many(dep, escrows)
    bad = landed[2]
    assert isinstance(bad, LedgerError) and bad.code == "insufficient_funds"
    good = [r for k, r in enumerate(landed) if k != 2]
    assert all(isinstance(r, str) for r in good)
    # the first five shared a transaction the chain refused: sent again one by one; the
    # last two shared the second transaction
    assert len({landed[0], landed[1], landed[3], landed[4]}) == 4
    assert landed[5] == landed[6] and landed[5] not in (landed[0], landed[1])
    index = dep.ledger.memo_index()
    assert [index.get(e.memo) for e in escrows] == [*landed[:2], None, *landed[3:]]
    balances = [dep.thb.balance(e.holder.pubkey()) for e in escrows]
    assert balances == [700_000, 700_000, 1_000_000, 700_000, 700_000, 700_000, 700_000]
    # escrowing the same orders again moves nothing (their memos are on the chain)
    assert st.lock_many(dep, [escrows[0], escrows[5]]) == [landed[0], landed[5]]
    assert dep.thb.balance(escrows[0].holder.pubkey()) == 700_000


def test_waiting_placements_go_in_one_batch_and_a_bad_one_fails_alone(site: Site) -> None:
    users = [signup(site.client, f"b{k}@x.org", "consumer") for k in range(9)]
    for u in users[:8]:
        fund(site, u, thb=10_000_000)  # the last has no money
    results: dict[int, Any] = {}
    t = site.trading

    def place(k: int, user_id: str, price: int) -> None:
        try:
            results[k] = t.place(user_id, "buy", 1_000, price)
        except OrderRejected as err:
            results[k] = err.code

    threads = [
        threading.Thread(target=place, args=(0, users[0]["user_id"], 3_000_000)),
        *(
            threading.Thread(target=place, args=(k, users[k]["user_id"], 3_000_000))
            for k in range(1, 9)
        ),
        # the first user's second order waits for the batch after its first
        threading.Thread(target=place, args=(9, users[0]["user_id"], 3_100_000)),
    ]
    with t.lock:  # the first placement flushes alone, then blocks: the rest queue up
        threads[0].start()
        wait_for(lambda: t._flushing)
        for k, th in enumerate(threads[1:], 1):
            th.start()  # each in turn, so the queue holds them in this order
            wait_for(lambda k=k: len(t._queue) == k)  # type: ignore[misc]
    for th in threads:
        th.join(timeout=60)
    assert results[8] == "insufficient_funds"
    placed = {k: r for k, r in results.items() if k != 8}
    assert all(isinstance(r, dict) and r["status"] == "open" for r in placed.values())
    assert [placed[k]["seq"] for k in range(8)] == list(range(1, 9))
    assert placed[9]["seq"] == 9
    # batches {0} and {1..9} (the first owner's order 0 is in the book already); of the
    # second, 8 escrowed: 1-5 in one transaction, 6, 7 and 9 in the next
    by_order = {o: by_order for o, by_order in escrow_signatures(site).items()}
    assert len(by_order) == 9
    sig = [by_order[placed[k]["order_id"]] if k != 8 else "" for k in range(10)]
    assert len(set(sig[1:6])) == 1 and sig[6] == sig[7] == sig[9] != sig[1]
    assert len(set(by_order.values())) == 3
    with site.platform.books.connect() as c:
        rows = c.execute(select(market_orders.c.order_id)).scalars().all()
        intents = dict(c.execute(select(books.orders.c.order_id, books.orders.c.status)).all())
        audited = c.execute(
            select(audit_log.c.detail).where(audit_log.c.action == "order.place")
        ).scalars()
        audited_ids = sorted(__import__("json").loads(d)["order_id"] for d in audited)
    assert sorted(rows) == sorted(r["order_id"] for r in placed.values()) == audited_ids
    assert intents == {r["order_id"]: "open" for r in placed.values()}
    assert auditlog.verify(site.platform.books) is None
    wallet = site.client.get("/api/v1/wallet", headers=users[8]["auth"]).json()
    assert wallet["thb_micro"] == 0


def test_a_self_trade_waits_for_the_next_batch_and_is_refused(site: Site) -> None:
    """Two orders of one owner never share a batch: the second is checked against a book
    that holds the first."""
    u, v = signup(site.client, "s@x.org"), signup(site.client, "v@x.org")
    fund(site, u, thb=10_000_000, grx=5_000)
    fund(site, v, thb=10_000_000)
    t = site.trading
    results: list[Any] = [None] * 3  # by thread: whichever caller flushes, any finishes first

    def place(k: int, user: dict[str, Any], side: str, price: int) -> None:
        try:
            results[k] = t.place(user["user_id"], side, 1_000, price)["side"]
        except OrderRejected as err:
            results[k] = err.code

    threads = [
        threading.Thread(target=place, args=(0, v, "buy", 2_500_000)),
        threading.Thread(target=place, args=(1, u, "buy", 3_000_000)),
        threading.Thread(target=place, args=(2, u, "sell", 2_000_000)),
    ]
    with t.lock:  # v's order flushes alone and blocks; u's two queue up behind it
        threads[0].start()
        wait_for(lambda: t._flushing)
        threads[1].start()
        wait_for(lambda: len(t._queue) == 1)
        threads[2].start()
        wait_for(lambda: len(t._queue) == 2)
    for th in threads:
        th.join(timeout=60)
    assert results == ["buy", "buy", "self_trade"]
    assert site.platform.dep.grx.balance(site.trading.wallets[u["user_id"]].pubkey()) == 5_000


def wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_batch_whose_transaction_fails_leaves_no_order_and_its_escrow_is_swept(
    site: Site,
) -> None:
    """Should the batch's one transaction fail (here a recorder that raises, standing in for
    a database error), no order of it is acknowledged or left in the book, and the escrow
    that landed is given back by the sweep."""
    users = [signup(site.client, f"f{k}@x.org", "consumer") for k in range(2)]
    for u in users:
        fund(site, u, thb=10_000_000)
    t = site.trading
    outcome: dict[int, Any] = {}

    def broken(_c: Any, _row: dict[str, Any]) -> None:
        raise RuntimeError("the database went away")

    def place(k: int, record: Any) -> None:
        try:
            outcome[k] = t.place(users[k]["user_id"], "buy", 1_000, 3_000_000, record=record)
        except RuntimeError as err:
            outcome[k] = str(err)

    blocker = signup(site.client, "blocker@x.org", "consumer")
    fund(site, blocker, thb=10_000_000)
    first = threading.Thread(target=lambda: t.place(blocker["user_id"], "buy", 1_000, 3_000_000))
    threads = [
        threading.Thread(target=place, args=(0, None)),
        threading.Thread(target=place, args=(1, broken)),
    ]
    with t.lock:
        first.start()
        wait_for(lambda: t._flushing)
        threads[0].start()
        wait_for(lambda: len(t._queue) == 1)
        threads[1].start()
        wait_for(lambda: len(t._queue) == 2)
    for th in [first, *threads]:
        th.join(timeout=60)
    assert outcome == {0: "the database went away", 1: "the database went away"}
    assert len(t.market.live_orders(blocker["user_id"])) == 1  # the book as the rows say
    assert [t.market.live_orders(u["user_id"]) for u in users] == [[], []]
    with site.platform.books.connect() as c:
        mine = [u["user_id"] for u in users]
        assert (
            c.execute(
                select(market_orders.c.order_id).where(market_orders.c.user_id.in_(mine))
            ).all()
            == []
        )
        pending = (
            c.execute(select(books.orders.c.order_id).where(books.orders.c.status == "pending"))
            .scalars()
            .all()
        )
    assert len(pending) == 2  # both escrows landed with the batch
    wallets = [site.trading.wallets[u["user_id"]] for u in users]
    dep = site.platform.dep
    assert [dep.thb.balance(st.owner_key(w)) for w in wallets] == [
        7_000_000,
        7_000_000,
    ]  # 3,000,000 each held
    t._sweep(t.market.epoch)
    assert [dep.thb.balance(st.owner_key(w)) for w in wallets] == [10_000_000, 10_000_000]
    assert auditlog.verify(site.platform.books) is None
