"""The list routes page by cursor, on SQLite and PostgreSQL: `GET /trades`, `/wallet`'s
ledger transactions (the per-account record), `/readings`, `/admin/users` (by status) and
`/admin/audit` (which checks its own links and what is new, not the whole chain). Exact
pages: the first, the next cursor, the last; another user's cursor shows nothing of the
first's; a bad cursor is 422. The queries behind each page are EXPLAINed over enough rows
that a missing index would show as a Seq Scan (PostgreSQL) or a SCAN (SQLite).

Rows of history (trades, readings, users, audit entries) are written straight into the
books, as the growth benchmark seeds them; the wallet's transactions are real ones on the
embedded ledger."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import database
from platform_site import ADMIN_H, Clock, Site, fund, signup, trade
from solders.pubkey import Pubkey
from sqlalchemy import event, insert, update

from gridtokenx import auditlog
from gridtokenx.adapters import books, ledger_index
from gridtokenx.adapters.tables import audit_log, epochs, market_orders, settings, users


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database(request.param, tmp_path) as url:
        s = Site(tmp_path / "platform", None if request.param == "sqlite" else url, Clock())
        yield s
        s.close()


def pages(
    client: Any, path: str, headers: dict[str, str], key: Any, **params: Any
) -> list[tuple[list[Any], str | None]]:
    """Every page of a list route from the first, each as (its keys, its Next-Cursor)."""
    out: list[tuple[list[Any], str | None]] = []
    cursor = None
    while True:
        query = {**params, **({} if cursor is None else {"cursor": cursor})}
        r = client.get(path, headers=headers, params=query)
        assert r.status_code == 200, r.text
        cursor = r.headers.get("Next-Cursor")
        out.append(([key(x) for x in r.json()], cursor))
        if cursor is None:
            return out


def test_my_trades_page_newest_first_and_an_admin_sees_all(site: Site) -> None:
    c = site.client
    home, other = signup(c, "home@x.org"), signup(c, "other@x.org")
    admin = signup(c, "ops@x.org")
    with site.platform.books.begin() as conn:
        conn.execute(update(users).where(users.c.user_id == admin["user_id"]).values(role="admin"))
    me, them, far = home["wallet"], other["wallet"], "F" * 44
    rows = [
        trade(7, 0, me, far),
        trade(7, 1, far, me),
        trade(8, 0, me, me),  # a self-trade: once, not twice
        trade(8, 1, far, far),
        trade(9, 0, them, far),
        trade(10, 0, far, me),
    ]
    books.add_rows(site.platform.books, books.trades, rows)
    key = lambda t: t["trade_id"]  # noqa: E731
    assert pages(c, "/api/v1/trades", home["auth"], key, limit=2) == [
        (["10-0", "8-0"], "8.8-0"),
        (["7-1", "7-0"], None),
    ]
    assert pages(c, "/api/v1/trades", home["auth"], key, limit=4) == [
        (["10-0", "8-0", "7-1", "7-0"], None)  # ends exactly at the oldest: no next page
    ]
    first = c.get("/api/v1/trades", headers=home["auth"]).json()  # no parameters: all of them
    assert first[0] == rows[5] and [t["trade_id"] for t in first] == ["10-0", "8-0", "7-1", "7-0"]
    # another household's cursor shows only its own trades (none before epoch 8)
    r = c.get("/api/v1/trades", headers=other["auth"], params={"cursor": "8.8-0"})
    assert (r.status_code, r.json(), r.headers.get("Next-Cursor")) == (200, [], None)
    assert [t["trade_id"] for t in c.get("/api/v1/trades", headers=other["auth"]).json()] == ["9-0"]
    token = c.post(
        "/api/v1/auth/login", json={"email": "ops@x.org", "password": "correct horse 1"}
    ).json()["access_token"]
    ops = {"Authorization": f"Bearer {token}"}
    assert pages(c, "/api/v1/trades", ops, key, limit=4) == [
        (["10-0", "9-0", "8-1", "8-0"], "8.8-0"),
        (["7-1", "7-0"], None),
    ]
    for bad in ("8", "x.8-0", "8.8 0", "1" * 19 + ".1", "8." + "a" * 65):
        r = c.get("/api/v1/trades", headers=home["auth"], params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)
    assert c.get("/api/v1/trades").status_code == 401


def chain_transactions(site: Site, wallet: str) -> list[tuple[str, list[str]]]:
    """The wallet's transactions newest first, by walking the whole chain (the old way)."""
    dep, owner = site.platform.dep, Pubkey.from_string(wallet)
    mine = {str(dep.grx.account_of(owner)), str(dep.thb.account_of(owner)), wallet}
    found = [
        (e.signature, list(e.memos))
        for e in site.platform.ledger.history()
        if mine & {str(k) for k in e.tx.message.account_keys}
    ]
    return found[::-1]


def test_wallet_transactions_page_from_the_per_account_record(site: Site) -> None:
    c = site.client
    home, other = signup(c, "home@x.org"), signup(c, "other@x.org")
    for thb in (1_000, 2_000, 3_000):
        fund(site, home, thb=thb)
    expected = chain_transactions(site, home["wallet"])
    assert len(expected) >= 4  # the wallet's opening and the three top-ups
    assert any(f"t-{home['user_id'][:8]}-3000" in text for text in expected[0][1])

    def page(who: dict[str, Any], **params: Any) -> dict[str, Any]:
        r = c.get("/api/v1/wallet", headers=who["auth"], params=params)
        assert r.status_code == 200, r.text
        body = dict(r.json())
        assert r.headers.get("Next-Cursor") == body["next_cursor"]
        return body

    whole = page(home)  # no parameters: the newest 50, as before cursors
    assert [(t["signature"], t["memos"]) for t in whole["transactions"]] == expected
    assert whole["next_cursor"] is None and whole["thb_micro"] == 6_000
    got, cursor, seen = [], None, 0
    while True:
        body = page(home, limit=2, **({} if cursor is None else {"cursor": cursor}))
        got += [(t["signature"], t["memos"]) for t in body["transactions"]]
        seen, cursor = seen + 1, body["next_cursor"]
        if cursor is None:
            break
    assert got == expected and seen == (len(expected) + 1) // 2
    first = page(home, limit=2)
    assert [t["signature"] for t in first["transactions"]] == [s for s, _ in expected[:2]]
    # the other household's page at the first's cursor: its own transactions only
    theirs = page(other, cursor=first["next_cursor"])["transactions"]
    own = {s for s, _ in chain_transactions(site, other["wallet"])}
    assert theirs and {t["signature"] for t in theirs} <= own
    assert not {t["signature"] for t in theirs} & {s for s, _ in expected}
    for bad in ("x", "-1", "1" * 19, "1.5"):
        r = c.get("/api/v1/wallet", headers=home["auth"], params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)
    # the record is caught up, not rebuilt: a second look indexes nothing new
    assert ledger_index.catch_up(site.platform.books, site.platform.ledger) == 0
    fund(site, home, thb=4_000)
    assert ledger_index.catch_up(site.platform.books, site.platform.ledger) == 1
    assert (
        page(home, limit=1)["transactions"][0]["signature"]
        == (chain_transactions(site, home["wallet"])[0][0])
    )


def test_my_readings_page_across_my_meters(site: Site) -> None:
    c = site.client
    home, other = signup(c, "home@x.org"), signup(c, "other@x.org")
    books.add_rows(
        site.platform.books,
        books.meters,
        [
            {"meter_id": "m-a", "public_key": bytes(32), "owner": home["wallet"]},
            {"meter_id": "m-b", "public_key": bytes(32), "owner": home["wallet"]},
            {"meter_id": "m-o", "public_key": bytes(32), "owner": other["wallet"]},
        ],
    )

    def reading(hub: str, epoch: int, idx: int, meter: str) -> dict[str, Any]:
        return {
            **{"hub_id": hub, "epoch": epoch, "idx": idx, "raw": b"r", "signature": bytes(64)},
            **{"meter_id": meter, "seq": epoch * 10 + idx, "import_wh": 5, "export_wh": 7},
        }

    books.add_rows(
        site.platform.books,
        books.batch_readings,
        [
            reading("hub-1", 5, 0, "m-a"),
            reading("hub-1", 5, 1, "m-o"),
            reading("hub-2", 5, 0, "m-b"),
            reading("hub-1", 6, 0, "m-a"),
            reading("hub-2", 6, 3, "m-b"),
            reading("hub-1", 7, 2, "m-o"),
        ],
    )
    key = lambda r: (r["hub_id"], r["epoch"], r["idx"])  # noqa: E731
    assert pages(c, "/api/v1/readings", home["auth"], key, limit=2) == [
        ([("hub-2", 6, 3), ("hub-1", 6, 0)], "6.0.hub-1"),
        ([("hub-2", 5, 0), ("hub-1", 5, 0)], None),
    ]
    r = c.get("/api/v1/readings", headers=home["auth"], params={"limit": 3})
    assert r.json()[0] == {
        "meter_id": "m-b",
        "hub_id": "hub-2",
        "epoch": 6,
        "idx": 3,
        "seq": 63,
        "import_wh": 5,
        "export_wh": 7,
    }
    assert r.headers["Next-Cursor"] == "5.0.hub-2"
    r = c.get("/api/v1/readings", headers=home["auth"], params={"cursor": "5.0.hub-2"})
    assert [key(x) for x in r.json()] == [("hub-1", 5, 0)] and "Next-Cursor" not in r.headers
    r = c.get("/api/v1/readings", headers=other["auth"], params={"cursor": "6.0.hub-1"})
    assert [key(x) for x in r.json()] == [("hub-1", 5, 1)]  # its own meter's only
    for bad in ("6.0", "x.0.hub-1", "6.0.hub 1", "6." + "1" * 10 + ".h"):
        r = c.get("/api/v1/readings", headers=home["auth"], params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)


def test_cleared_epochs_page_newest_first(site: Site) -> None:
    c = site.client
    books.add_rows(
        site.platform.books,
        epochs,
        [
            {"epoch": e, "state": "settled", "clearing_price": 3_000_000 + e, "volume_wh": e}
            | {"trades": 1, "transactions": json.dumps([f"sig-{e}"]), "closed_at": e * 900}
            for e in (3, 4, 6, 9, 10)
        ],
    )
    key = lambda e: e["epoch"]  # noqa: E731
    assert pages(c, "/api/v1/market/epochs", {}, key, limit=2) == [
        ([10, 9], "9"),
        ([6, 4], "4"),
        ([3], None),
    ]
    r = c.get("/api/v1/market/epochs", params={"cursor": "6", "limit": 1})
    assert r.json() == [
        {"epoch": 4, "state": "settled", "clearing_price": 3_000_004, "volume_wh": 4}
        | {"trades": 1, "transactions": ["sig-4"], "closed_at": 3600}
    ]
    assert pages(c, "/api/v1/market/epochs", {}, key) == [([10, 9, 6, 4, 3], None)]
    for bad in ("x", "-1", "1" * 19):
        r = c.get("/api/v1/market/epochs", params={"cursor": bad})
        assert r.status_code == 422, (bad, r.text)


def user_row(user_id: str, created_at: int, status: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "email": f"{user_id}@x.org",
        "password_hash": "secret-hash",
        "role": "consumer",
        "wallet": (user_id * 44)[:44],
        "custodial": True,
        "status": status,
        "created_at": created_at,
    }


def test_admin_users_page_oldest_first_by_status(site: Site) -> None:
    c = site.client
    books.add_rows(
        site.platform.books,
        users,
        [
            user_row("u-c", 100, "active"),
            user_row("u-a", 100, "suspended"),  # the same second: the id breaks the tie
            user_row("u-b", 100, "active"),
            user_row("u-d", 200, "pending"),
            user_row("u-e", 300, "active"),
        ],
    )
    key = lambda u: u["user_id"]  # noqa: E731
    assert pages(c, "/api/v1/admin/users", ADMIN_H, key, limit=2) == [
        (["u-a", "u-b"], "100.u-b"),
        (["u-c", "u-d"], "200.u-d"),
        (["u-e"], None),
    ]
    assert pages(c, "/api/v1/admin/users", ADMIN_H, key, limit=2, status="active") == [
        (["u-b", "u-c"], "100.u-c"),
        (["u-e"], None),
    ]
    assert pages(c, "/api/v1/admin/users", ADMIN_H, key, status="pending") == [(["u-d"], None)]
    whole = c.get("/api/v1/admin/users", headers=ADMIN_H).json()  # as before: every user
    assert whole[0] == {
        k: v for k, v in user_row("u-a", 100, "suspended").items() if k != "password_hash"
    }
    for params in ({"cursor": "100"}, {"cursor": "x.u-a"}, {"status": "gone"}, {"limit": 0}):
        r = c.get("/api/v1/admin/users", headers=ADMIN_H, params=params)
        assert r.status_code == 422, (params, r.text)
    home = signup(c, "home@x.org")
    assert c.get("/api/v1/admin/users", headers=home["auth"]).status_code == 403


def test_an_audit_page_checks_its_links_and_what_is_new(site: Site) -> None:
    c, engine = site.client, site.platform.books
    base = len(auditlog.entries(engine, 1000))
    for k in range(6):
        auditlog.append(engine, "op", "test.page", {"k": k})
    newest = base + 6

    def page(**params: Any) -> dict[str, Any]:
        r = c.get("/api/v1/admin/audit", headers=ADMIN_H, params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = page(limit=2)
    assert [e["seq"] for e in first["entries"]] == [newest, newest - 1]
    assert first["broken_at"] is None and first["next_cursor"] == str(newest - 1)
    with engine.connect() as conn:
        stored = conn.execute(settings.select().where(settings.c.name == "audit_verified")).first()
    assert stored is not None and json.loads(stored.value)["seq"] == newest  # the checkpoint
    # an entry edited behind the checkpoint: the page holding it says so (and so does the
    # whole-chain check); a page elsewhere checks only its own links
    tampered = base + 2
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == tampered).values(actor="evil"))
    assert page(limit=2)["broken_at"] is None
    assert page(limit=2, cursor=str(tampered + 1))["broken_at"] == tampered
    assert page(limit=1, cursor=str(tampered + 1))["broken_at"] == tampered
    assert page(limit=1, cursor=str(tampered))["broken_at"] is None  # the entry before it
    assert auditlog.verify(engine) == tampered
    # an entry appended since the checkpoint that does not hold shows on every page
    seq = auditlog.append(engine, "op", "test.page", {"k": 6})
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(detail="{}"))
    assert page(limit=1, cursor=str(base + 2))["broken_at"] == seq
    assert page(limit=2, cursor=str(newest))["broken_at"] == seq
    # a deleted entry breaks the link of the one after it
    with engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.seq == base + 4))
    assert page(limit=2, cursor=str(base + 6))["broken_at"] == base + 5  # 5 then 3
    r = c.get("/api/v1/admin/audit", headers=ADMIN_H, params={"cursor": "x"})
    assert r.status_code == 422


def test_a_long_unverified_log_is_checked_a_bounded_stretch_a_page(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, engine = site.client, site.platform.books
    base = len(auditlog.entries(engine, 1000))
    for k in range(7):
        auditlog.append(engine, "op", "test.page", {"k": k})
    monkeypatch.setattr(auditlog, "CHECK_MAX", 3)

    def look() -> tuple[int | None, int]:
        r = c.get("/api/v1/admin/audit", headers=ADMIN_H, params={"limit": 1})
        assert r.status_code == 200, r.text
        return r.json()["broken_at"], r.json()["verified_to"]

    assert look() == (None, 3)
    assert look() == (None, 6)
    assert look() == (None, base + 7) and base + 7 <= 9
    assert look() == (None, base + 7)  # nothing new: the checkpoint stays
    seq = auditlog.append(engine, "op", "test.page", {"k": 7})
    with engine.begin() as conn:  # a break past the checkpoint stops it there
        conn.execute(update(audit_log).where(audit_log.c.seq == seq).values(ts=1))
    auditlog.append(engine, "op", "test.page", {"k": 8})
    assert look() == (seq, base + 7)
    assert look() == (seq, base + 7)


# -- the query plans: each page's queries use an index, none a Seq Scan (SQLite: a SCAN) ------
BIG = (
    *("market_orders", "ledger_trades", "ledger_account_entries", "ledger_batch_readings"),
    *("users", "audit_log", "epochs", "ledger_meters"),
)


def _audit_rows(start_seq: int, start_hash: bytes, n: int) -> list[dict[str, Any]]:
    out, prev = [], start_hash
    for seq in range(start_seq + 1, start_seq + n + 1):
        ts, detail = 1_700_000_000 + seq, json.dumps({"k": seq})
        body = json.dumps([seq, ts, "u", "t", detail], separators=(",", ":")).encode()
        digest = hashlib.sha256(prev + body).digest()
        out.append(
            {"seq": seq, "ts": ts, "actor": "u", "action": "t", "detail": detail}
            | {"prev_hash": prev, "hash": digest}
        )
        prev = digest
    return out


def test_list_queries_use_their_indexes(site: Site) -> None:
    c, engine = site.client, site.platform.books
    home = signup(c, "home@x.org")
    me, n = home["wallet"], 20_000
    wallets = [f"{k:044d}" for k in range(200)]
    with engine.begin() as conn:
        conn.execute(
            insert(books.trades),
            [
                trade(e // 10, e % 10, me if e % 997 == 0 else wallets[e % 200], wallets[e % 7])
                for e in range(n)
            ],
        )
        conn.execute(
            insert(books.account_entries),
            [
                {"account": me if k % 991 == 0 else wallets[k % 200], "pos": 1_000_000 + k}
                | {"signature": f"{k:088d}", "memos": "[]"}
                for k in range(n)
            ],
        )
        conn.execute(
            insert(books.meters),
            [
                {"meter_id": f"m-{k}", "public_key": bytes(32), "owner": f"{k:044d}"}
                for k in range(5000)
            ]
            + [{"meter_id": "m-home", "public_key": bytes(32), "owner": me}],
        )
        conn.execute(
            insert(books.batch_readings),
            [
                {"hub_id": "hub-1", "epoch": k // 100, "idx": k % 100, "raw": b"r"}
                | {"signature": bytes(64), "meter_id": "m-home" if k % 100 == 0 else f"m-{k % 200}"}
                | {"seq": k, "import_wh": k, "export_wh": 0}
                for k in range(n)
            ],
        )
        conn.execute(
            insert(epochs),
            [
                {"epoch": e, "state": "settled", "clearing_price": 1, "volume_wh": 1, "trades": 1}
                | {"transactions": "[]", "closed_at": e}
                for e in range(n)
            ],
        )
        conn.execute(
            insert(market_orders),
            [
                {
                    "order_id": f"o-{k:x}",
                    "user_id": home["user_id"] if k % 1009 == 0 else f"u{k % 300}",
                }
                | {"epoch": k // 20, "seq": k % 20 + 1, "side": "buy", "quantity_wh": 100}
                | {"price": 3_000_000, "zone": "default", "tif": "gfe", "status": "filled"}
                | {"filled_wh": 100, "created_at": k}
                for k in range(n)
            ],
        )
        conn.execute(
            insert(users),
            [
                user_row(f"u-{k:05d}", 1000 + k // 3, ("active", "suspended")[k % 2])
                for k in range(5000)
            ],
        )
    last = auditlog.entries(engine, 1)
    start = (last[0]["seq"], bytes.fromhex(last[0]["hash"])) if last else (0, bytes(32))
    books.add_rows(engine, audit_log, _audit_rows(*start, n))
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    assert c.get("/api/v1/admin/audit", headers=ADMIN_H).status_code == 200  # the checkpoint

    seen: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT") and any(t in statement for t in BIG):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        for path, headers, params in (
            ("/api/v1/orders", home["auth"], {"limit": 5}),
            ("/api/v1/orders", home["auth"], {"limit": 5, "cursor": "500.1.o-2710"}),
            ("/api/v1/trades", home["auth"], {"limit": 5}),
            ("/api/v1/trades", home["auth"], {"limit": 5, "cursor": "1000.1000-0"}),
            ("/api/v1/wallet", home["auth"], {"limit": 5}),
            ("/api/v1/wallet", home["auth"], {"limit": 5, "cursor": "1015000"}),
            ("/api/v1/readings", home["auth"], {"limit": 5}),
            ("/api/v1/readings", home["auth"], {"limit": 5, "cursor": "100.0.hub-1"}),
            ("/api/v1/admin/users", ADMIN_H, {"limit": 5, "cursor": "1500.u-01500"}),
            ("/api/v1/admin/users", ADMIN_H, {"limit": 5, "status": "active"}),
            ("/api/v1/admin/audit", ADMIN_H, {"limit": 5, "cursor": "10000"}),
            ("/api/v1/market/epochs", {}, {"limit": 5, "cursor": "1500"}),
        ):
            r = c.get(path, headers=headers, params=params)
            assert r.status_code == 200, (path, r.text)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    tables_read = set()
    with engine.connect() as conn:
        for statement, params in seen:
            if engine.dialect.name == "postgresql":
                found = conn.exec_driver_sql("EXPLAIN " + statement, params)
                plan = "\n".join(row[0] for row in found)
                assert "Seq Scan" not in plan, (statement, plan)
            else:  # SEARCH ... USING INDEX; never a SCAN of a table or a sort of its rows
                found = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                plan = "\n".join(str(row[-1]) for row in found)
                assert "SCAN" not in plan and "TEMP B-TREE" not in plan, (statement, plan)
            assert "Index" in plan or "INDEX" in plan, (statement, plan)
            tables_read |= {t for t in BIG if f" {t}" in statement}
    assert tables_read == set(BIG)
