"""Group commit of order placements (SQLite, the embedded ledger): escrows packed into as
few ledger transactions as fit, one bad order failing alone, a batch's orders written and
audited in one transaction."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from platform_site import Clock, Site, fund, signup
from sqlalchemy import select

from gridtokenx import audit, auditlog
from gridtokenx.adapters import books
from gridtokenx.adapters.tables import audit_log, market_orders
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.market.config import Mechanism
from gridtokenx.market.errors import OrderRejected
from gridtokenx.services.market_base import order_id


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


def test_a_custodial_wallets_first_escrow_grants_the_delegate_which_signs_the_next(
    site: Site,
) -> None:
    """The first escrow of each custodial wallet is signed by its own key and grants the
    platform's delegate `UNLIMITED` in the same transaction (4 such fit one); from then on
    the delegate signs (9 fit one, with two signatures: payer and delegate). A wallet whose
    grant is gone (a delegate other than the platform's) signs and grants again."""
    users = [signup(site.client, f"g{k}@x.org") for k in range(9)]
    for u in users:
        fund(site, u, thb=10_000_000)
    dep, wallets = site.platform.dep, site.trading.wallets
    delegate = wallets.delegate
    holders = [wallets[u["user_id"]] for u in users]

    def escrows() -> list[st.Escrow]:
        out = []
        for h in holders:
            assert not isinstance(h, st.Delegated)
            grant = dep.thb.holding(st.owner_key(h))[1]
            out.append(st.custodial_escrow(h, delegate, grant, order_id(), "thb", 100_000))
        return out

    first = escrows()
    assert [e.approve for e in first] == [delegate.pubkey()] * 9
    assert [e.holder for e in first] == holders
    before = len(dep.ledger.history())
    landed = st.lock_many(dep, first)
    txs = dep.ledger.history()[before:]
    assert [len(t.memos) for t in txs] == [4, 4, 1] and len(set(landed)) == 3
    assert [len(t.tx.signatures) for t in txs] == [5, 5, 2]
    for h in holders:
        assert dep.thb.holding(st.owner_key(h)) == (
            9_900_000,
            (delegate.pubkey(), st.UNLIMITED),
        )
    second = escrows()
    assert all(isinstance(e.holder, st.Delegated) and e.approve is None for e in second)
    before = len(dep.ledger.history())
    landed = st.lock_many(dep, second)
    txs = dep.ledger.history()[before:]
    assert [len(t.memos) for t in txs] == [9] and len(set(landed)) == 1
    assert [len(t.tx.signatures) for t in txs] == [2]
    assert dep.thb.balance(dep.escrow.pubkey()) == 18 * 100_000
    left = st.UNLIMITED - 100_000
    assert dep.thb.holding(st.owner_key(holders[0])) == (9_800_000, (delegate.pubkey(), left))
    # a grant to another delegate (or none) is not the platform's: the wallet signs again
    other = st.custodial_escrow(
        holders[0], delegate, (st.owner_key(holders[1]), st.UNLIMITED), "o", "thb", 1
    )
    assert other.holder == holders[0] and other.approve == delegate.pubkey()
    short = st.custodial_escrow(holders[0], delegate, (delegate.pubkey(), 5), "o", "thb", 6)
    assert short.holder == holders[0] and short.approve == delegate.pubkey()


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
    # second, 8 escrowed: 1-4 in one transaction (each wallet's first escrow signs and
    # grants the delegate: 4 fit), 5, 6, 7 and 9 (the first owner's, the delegate's) next
    by_order = {o: by_order for o, by_order in escrow_signatures(site).items()}
    assert len(by_order) == 9
    sig = [by_order[placed[k]["order_id"]] if k != 8 else "" for k in range(10)]
    assert len(set(sig[1:5])) == 1 and sig[5] == sig[6] == sig[7] == sig[9] != sig[1]
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
    results: dict[int, Any] = {}  # by thread: each wakes when it may, in any order

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
    assert results == {0: "buy", 1: "buy", 2: "self_trade"}
    assert site.platform.dep.grx.balance(site.trading.wallets[u["user_id"]].pubkey()) == 5_000


def wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_one_requests_failed_write_fails_that_order_alone_and_its_escrow_is_refunded(
    site: Site,
) -> None:
    """One request's write fails inside the batch's transaction (here its recorder raises,
    standing in for a database error on its Idempotency-Key): only that order fails, with
    its own error; the other order of the batch is placed, and the failed one's escrow is
    given back at once, not at the epoch's close."""
    users = [signup(site.client, f"f{k}@x.org", "consumer") for k in range(2)]
    for u in users:
        fund(site, u, thb=10_000_000)
    t = site.trading
    outcome: dict[int, Any] = {}

    def broken(_c: Any, _row: dict[str, Any]) -> None:
        raise RuntimeError("the database went away")

    def place(k: int, record: Any) -> None:
        try:
            outcome[k] = t.place(users[k]["user_id"], "buy", 1_000, 3_000_000, record=record)[
                "status"
            ]
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
    assert outcome == {0: "open", 1: "the database went away"}
    assert len(t.market.live_orders(blocker["user_id"])) == 1
    assert [len(t.market.live_orders(u["user_id"])) for u in users] == [1, 0]
    with site.platform.books.connect() as c:
        rows = c.execute(
            select(market_orders.c.user_id).where(
                market_orders.c.user_id.in_([u["user_id"] for u in users])
            )
        ).scalars()
        assert list(rows) == [users[0]["user_id"]]
        pending = (
            c.execute(select(books.orders.c.order_id).where(books.orders.c.status == "pending"))
            .scalars()
            .all()
        )
    assert pending == []
    wallets = [site.trading.wallets[u["user_id"]] for u in users]
    dep = site.platform.dep
    assert [dep.thb.balance(st.owner_key(w)) for w in wallets] == [7_000_000, 10_000_000]


def test_a_breaker_trip_inside_a_batch_keeps_what_was_entered_and_refunds_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CDA, breaker 10%: one batch of buys at 2.0M, 3.0M, 3.0M against asks at 2.0M and
    3.0M. The first fills at 2.0M; the second would trade at 3.0M (+50%), trips the breaker
    and is cancelled (its row written, as one order alone); the third is refused `market_halted`
    and its escrow is given back at once. No trade lives only in memory; the audit is clean."""
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path, None, Clock(), mechanism=Mechanism.CDA)
    try:
        t = s.trading
        cfg = replace(t.config, breaker_bps=1_000)
        t.config = cfg
        t.market.config = cfg
        s1, s2 = signup(s.client, "s1@x.org"), signup(s.client, "s2@x.org")
        fund(s, s1, grx=10_000)
        fund(s, s2, grx=10_000)
        bs = [signup(s.client, f"b{k}@x.org", "consumer") for k in range(3)]
        for b in bs:
            fund(s, b, thb=100_000_000)
        t.place(s1["user_id"], "sell", 100, 2_000_000)
        t.place(s2["user_id"], "sell", 1_000, 3_000_000)
        out: dict[int, Any] = {}

        def place(k: int, price: int) -> None:
            try:
                out[k] = t.place(bs[k]["user_id"], "buy", 100, price)["status"]
            except OrderRejected as e:
                out[k] = e.code

        blocker = signup(s.client, "blk@x.org")
        fund(s, blocker, grx=10_000)
        first = threading.Thread(target=lambda: t.place(blocker["user_id"], "sell", 10, 7_900_000))
        prices = [2_000_000, 3_000_000, 3_000_000]
        ths = [threading.Thread(target=place, args=(k, p)) for k, p in enumerate(prices)]
        with t.lock:
            first.start()
            wait_for(lambda: t._flushing)
            for k, th in enumerate(ths, 1):
                th.start()
                wait_for(lambda k=k: len(t._queue) == k)  # type: ignore[misc]
        for th in [first, *ths]:
            th.join(60)
        assert out == {0: "filled", 1: "cancelled", 2: "market_halted"}
        assert t.market.halted is not None
        assert [(tr.quantity_wh, tr.price) for tr in t.exchange._trades] == [(100, 2_000_000)]
        owners = {s1["user_id"]: "s1", s2["user_id"]: "s2"} | {
            b["user_id"]: f"b{k}" for k, b in enumerate(bs)
        }
        with s.platform.books.connect() as c:
            rows = c.execute(
                select(market_orders.c.user_id, market_orders.c.status, market_orders.c.filled_wh)
            ).all()
            intents = c.execute(
                select(books.orders.c.owner, books.orders.c.status, books.orders.c.escrowed)
            ).all()
        assert sorted((owners[u], st_, f) for u, st_, f in rows if u in owners) == [
            ("b0", "filled", 100),
            ("b1", "cancelled", 0),
            ("s1", "filled", 100),
            ("s2", "open", 0),
        ]
        assert "pending" not in {i.status for i in intents}
        dep = s.platform.dep
        thb = [dep.thb.balance(st.owner_key(t.wallets[b["user_id"]])) for b in bs]
        assert thb == [100_000_000 - 200_000, 100_000_000 - 300_000, 100_000_000]
        rep = audit.run(s.platform.dep, s.platform.books, tmp_path / "archive")
        assert [p for p in rep.as_dict().get("problems", []) if "escrow" in str(p)] == []
    finally:
        s.close()


def test_reloading_the_book_keeps_the_halt_and_the_breaker_window(site: Site) -> None:
    """A batch's failed commit reloads the book from the rows; a halt the breaker set and
    the window of recent prices stay (a reload never un-halts the market)."""
    t = site.trading
    t.market.halted = "price moved more than 10% within 60 s"
    band = t.market._band
    assert band.window(1_000) is None
    band.record(1_000, 2_000_000, 2_100_000)
    t._reload_book()
    assert t.market.halted == "price moved more than 10% within 60 s"
    assert t.market._band.window(1_000) == (2_000_000, 2_100_000)


def test_a_packed_escrow_reported_failed_that_landed_is_not_sent_again(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster can report an error for a packed transaction that lands after all (faked:
    the embedded ledger lands it, the RPC's answer is an error). The one-by-one resend reads
    the chain again and skips the escrows that landed: each is taken once."""
    users = [signup(site.client, f"r{k}@x.org") for k in range(3)]
    for u in users:
        fund(site, u, thb=1_000_000)
    dep = site.platform.dep
    holders = [site.trading.wallets[u["user_id"]] for u in users]
    escrows = [st.Escrow(h, order_id(), "thb", 300_000, st.owner_key(h)) for h in holders]
    real = dep.ledger.send_many
    calls: list[int] = []

    def lying(transactions: Any) -> list[str | LedgerError]:
        calls.append(len(transactions))
        results = real(transactions)
        if len(calls) == 1:  # landed, but reported lost (a timeout of the RPC's answer)
            return [LedgerError("transaction_failed") for _ in results]
        return results

    monkeypatch.setattr(dep.ledger, "send_many", lying)
    landed = st.lock_many(dep, escrows)
    index = dep.ledger.memo_index()
    assert landed == [index[e.memo] for e in escrows]
    assert calls == [1]  # nothing sent again
    assert [dep.thb.balance(h.pubkey()) for h in holders] == [700_000, 700_000, 700_000]


def test_a_failing_listener_never_fails_a_committed_order(site: Site) -> None:
    """A listener that raises (a Redis relay down; here a function that raises) is logged
    and counted; the placement still returns its row and the other listener gets every
    event."""
    u = signup(site.client, "l@x.org", "consumer")
    fund(site, u, thb=10_000_000)
    t = site.trading
    seen: list[str] = []

    def down(_e: Any) -> None:
        raise ConnectionError("relay down")

    t.listeners[:0] = [down]
    t.listeners.append(lambda e: seen.append(e.kind))
    row = t.place(u["user_id"], "buy", 1_000, 3_000_000)
    assert row["status"] == "open"
    assert seen == ["order", "book"]
    assert t.publish_failures == 2
    with site.platform.books.connect() as c:
        assert (
            c.execute(
                select(market_orders.c.status).where(market_orders.c.order_id == row["order_id"])
            ).scalar_one()
            == "open"
        )


def test_the_audit_logs_lock_is_free_while_a_batch_escrows_on_the_ledger(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's ledger I/O (its escrows) runs without this process's audit-log lock, so
    logins, registrations and admin actions never wait it out; the order is placed."""
    u = signup(site.client, "a@x.org", "consumer")
    fund(site, u, thb=10_000_000)
    dep = site.platform.dep
    real = dep.ledger.send_many
    locked: list[bool] = []

    def watched(transactions: Any) -> list[str | LedgerError]:
        locked.append(auditlog._lock.locked())
        return real(transactions)

    monkeypatch.setattr(dep.ledger, "send_many", watched)
    row = site.trading.place(u["user_id"], "buy", 1_000, 3_000_000)
    assert row["status"] == "open"
    assert locked == [False]
    assert not auditlog._lock.locked()


def test_an_order_of_an_ended_login_is_refused_with_its_batch(site: Site) -> None:
    """The order route only decodes the access token (no database read on the event loop);
    the login's end is checked with the batch: 401 `login_revoked`, nothing placed, while
    the same user's other login still trades."""
    user = signup(site.client, "ended@x.org", "consumer")
    fund(site, user, thb=10_000_000)
    other = site.client.post(
        "/api/v1/auth/login", json={"email": "ended@x.org", "password": "correct horse 1"}
    ).json()
    out = site.client.post(
        "/api/v1/auth/logout", json={"refresh_token": user["refresh_token"]}, headers=user["auth"]
    )
    assert out.status_code == 204, out.text
    order = {"side": "buy", "quantity_wh": 1_000, "price": 3_000_000}
    refused = site.client.post("/api/v1/orders", json=order, headers=user["auth"])
    assert (refused.status_code, refused.json()["code"]) == (401, "login_revoked")
    with site.platform.books.connect() as c:
        assert c.execute(select(market_orders.c.order_id)).scalars().all() == []
    placed = site.client.post(
        "/api/v1/orders", json=order, headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert placed.status_code == 201 and placed.json()["status"] == "open"


def test_placements_from_an_event_loop_share_a_batch_on_the_group_commit_thread(
    site: Site,
) -> None:
    """`place_async` (the order route's) waits without a thread: the group-commit thread
    flushes; placements that arrive during a flush go in the next batch together, and a bad
    one fails alone with its own code."""
    import asyncio

    users = [signup(site.client, f"a{k}@x.org", "consumer") for k in range(6)]
    for u in users[:5]:
        fund(site, u, thb=10_000_000)  # the last has no money
    t = site.trading
    results: list[Any] = []

    async def main() -> None:
        async def one(k: int) -> Any:
            if k:  # the first flushes alone (blocked on the lock), then the rest queue up
                while len(t._queue) < k - 1 or not t._flushing:
                    await asyncio.sleep(0.005)
            try:
                return await t.place_async(users[k]["user_id"], "buy", 1_000, 3_000_000)
            except OrderRejected as err:
                return err.code

        results.extend(await asyncio.gather(*(one(k) for k in range(6))))

    with t.lock:
        runner = threading.Thread(target=asyncio.run, args=(main(),))
        runner.start()
        wait_for(lambda: len(t._queue) == 5)
    runner.join(timeout=60)
    assert results[5] == "insufficient_funds"
    assert [r["seq"] for r in results[:5]] == [1, 2, 3, 4, 5]
    signatures = escrow_signatures(site)
    # batches {0} and {1..5}: the second's four escrows in one ledger transaction
    sig = [signatures[r["order_id"]] for r in results[:5]]
    assert sig[0] != sig[1] and len(set(sig[1:])) == 1
    wait_for(lambda: not t._flushing and not t._queue)  # the flusher hands over after telling


def test_closing_answers_the_placements_taken_then_refuses_new_ones(site: Site) -> None:
    """`Trading.close` (a stopping `platform run`): the queued placements are placed, each
    caller answered, then the group-commit thread ends; a placement after is refused with
    its own code, never left waiting."""
    from gridtokenx.errors import Unavailable

    users = [signup(site.client, f"c{k}@x.org", "consumer") for k in range(3)]
    for u in users:
        fund(site, u, thb=10_000_000)
    t = site.trading
    with t.lock:  # the group-commit thread blocks on the first batch: the rest queue
        taken = [t.submit(u["user_id"], "buy", 1_000, 3_000_000) for u in users]
        closing = threading.Thread(target=t.close)
        closing.start()
        wait_for(lambda: t._closed)
        with pytest.raises(Unavailable) as refused:
            t.submit(users[0]["user_id"], "buy", 1_000, 3_000_000)
        assert refused.value.code == "stopping"
        assert closing.is_alive() and not any(f.done() for f in taken)
    closing.join(timeout=60)
    assert not closing.is_alive()
    rows = [f.result(timeout=0) for f in taken]
    assert [(r["user_id"], r["status"]) for r in rows] == [(u["user_id"], "open") for u in users]
    assert not any(th.is_alive() for th in t._committer._threads)
    with pytest.raises(Unavailable) as late:
        t.place(users[1]["user_id"], "buy", 1_000, 3_000_000)
    assert late.value.code == "stopping"
    with site.platform.books.connect() as c:
        placed = sorted(c.execute(select(market_orders.c.order_id)).scalars())
    assert placed == sorted(r["order_id"] for r in rows)


def test_an_escrow_left_without_its_order_row_is_refunded_at_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An escrow the books hold open for an order the market has no row of (a crash between
    them under the earlier write order): the restart's recovery gives it back, once."""
    from solders.pubkey import Pubkey

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    s = Site(tmp_path, None, clock)
    pat = signup(s.client, "pat@example.org")
    fund(s, pat, thb=10_000_000)
    wallet = Pubkey.from_string(pat["wallet"])
    r = s.client.post(
        "/api/v1/orders",
        headers=pat["auth"],
        json={"side": "buy", "quantity_wh": 1_000, "price": 3_000_000},
    )
    assert r.status_code == 201, r.text
    oid = r.json()["order_id"]
    held = 10_000_000 - s.platform.dep.thb.balance(wallet)
    assert held > 0
    with s.platform.books.begin() as c:
        c.execute(market_orders.delete().where(market_orders.c.order_id == oid))
    s.close()
    for _ in range(2):  # and a second restart pays nothing again
        again = Site(tmp_path, None, clock)
        assert again.platform.dep.thb.balance(wallet) == 10_000_000
        with again.platform.books.connect() as c:
            refunds = c.execute(
                select(books.refunds.c.kind, books.refunds.c.amount).where(
                    books.refunds.c.order_id == oid
                )
            ).all()
            status = c.execute(
                select(books.orders.c.status).where(books.orders.c.order_id == oid)
            ).scalar_one()
        assert [tuple(x) for x in refunds] == [("cancel", held)]
        assert status == "closed"
        again.close()
