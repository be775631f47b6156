"""History does not slow the reads: a household's page finds its newest readings and
trades by index (with a limit), the demo agents find each owner's recent power
from its meters' newest readings only, and migration 0005 fills the reading references of
batches stored before it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from databases import database
from ledger_fixtures import reading
from platform_site import Clock, Site, fund, signup
from sqlalchemy import create_engine, event, select

from gridtokenx.adapters import books, queries
from gridtokenx.adapters.tables import market_orders
from gridtokenx.wire.reading import encode


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


def stored(meter: str, epoch: int, idx: int, import_wh: int) -> dict[str, object]:
    """A batch reading row as the co-signer stores it (the signature is not checked here)."""
    raw = encode(reading(meter, epoch, import_wh, 0))
    return {
        "hub_id": "hub-1",
        "epoch": epoch,
        "idx": idx,
        "raw": raw,
        "signature": b"\0" * 64,
        "meter_id": meter,
        "seq": epoch,
        "import_wh": import_wh,
        "export_wh": 0,
    }


def trade(epoch: int, buyer: str, seller: str) -> dict[str, object]:
    return {
        "epoch": epoch,
        "trade_id": f"{epoch}-0",
        "buy_id": f"b{epoch}",
        "sell_id": f"s{epoch}",
        "buyer": buyer,
        "seller": seller,
        "wh": epoch,
        "buyer_paid": 10,
        "seller_net": 9,
        "fee": 1,
        "wheeling": 0,
    }


def test_the_account_page_shows_the_newest_readings_and_trades(site: Site) -> None:
    s = site
    home = signup(s.client, "h@x.org")
    other = "9" * 44
    books.add_rows(
        s.platform.books,
        books.meters,
        [
            {"meter_id": "m-home", "public_key": b"\1" * 32, "owner": home["wallet"]},
            {"meter_id": "m-other", "public_key": b"\2" * 32, "owner": other},
        ],
    )
    rows = [stored("m-home", e, 0, 10 * e) for e in range(1, 151)]
    rows += [stored("m-other", e, 1, 7 * e) for e in range(1, 31)]
    books.add_rows(s.platform.books, books.batch_readings, rows)
    books.add_rows(
        s.platform.books,
        books.trades,
        [trade(e, other, home["wallet"]) for e in range(1, 121)]
        + [trade(e, other, other) for e in range(121, 131)],
    )
    newest = queries.readings_of_meters(s.platform.books, ["m-home"], 100)
    assert [r["epoch"] for r in newest] == list(range(150, 50, -1))
    assert {r["meter_id"] for r in newest} == {"m-home"}
    mine = queries.trades_of_wallet(s.platform.books, home["wallet"], 100)
    assert [t["epoch"] for t in mine] == list(range(120, 20, -1))
    assert queries.meters_of_wallet(s.platform.books, home["wallet"]) == ["m-home"]
    s.client.cookies.set("gtx_access", home["access_token"])
    page = s.client.get("/me")
    assert page.status_code == 200
    table = page.text.split('id="readings"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<td>m-home</td><td>(\d+)</td>", table) == [
        str(e) for e in range(150, 130, -1)
    ]
    assert "m-other" not in table
    # each reading at its own time on the site's clock (Asia/Bangkok)
    assert "<td>m-home</td><td>150</td><td>2026-09-23 10:43:20</td>" in table
    trades = page.text.split('id="trades"', 1)[1].split("</table>", 1)[0]
    assert re.findall(
        r'<tr><td><time title="epoch (\d+)">[^<]+</time></td><td>sell</td>', trades
    ) == [str(e) for e in range(120, 100, -1)]  # the newest 20, the rest in the API
    assert "all of them: <code>GET /api/v1/trades</code>" in page.text
    # the demo agents' forecast: each owner's average power over its newest 7 readings
    # (m-home 60 Wh in 5,400 s, m-other 42 Wh)
    assert queries.recent_flows(s.platform.books) == {home["wallet"]: (40, 0), other: (28, 0)}


def test_the_account_page_shows_the_open_epochs_orders_and_the_newest_20_before(
    site: Site,
) -> None:
    s = site
    home = signup(s.client, "o@x.org")
    fund(s, home, thb=10_000_000)
    epoch = s.trading.current_epoch()
    books.add_rows(  # a year's closed orders, one an epoch
        s.platform.books,
        market_orders,
        [
            {
                "order_id": f"o-old-{e:05d}",
                "user_id": home["user_id"],
                "epoch": e,
                "seq": 1,
                "side": "buy",
                "quantity_wh": 100,
                "price": 3_000_000,
                "zone": "default",
                "tif": "GFE",
                "status": "expired",
                "filled_wh": 0,
                "created_at": 0,
            }
            for e in range(epoch - 300, epoch)
        ],
    )
    placed = [
        s.client.post(
            "/api/v1/orders",
            headers=home["auth"],
            json={"side": "buy", "quantity_wh": 100, "price": 3_000_000 + k},
        ).json()["order_id"]
        for k in range(23)  # more than 20: every open one is shown, cancellable
    ]
    s.client.cookies.set("gtx_access", home["access_token"])
    page = s.client.get("/me").text
    table = page.split('id="orders"', 1)[1].split("</table>", 1)[0]
    shown = re.findall(r"<td><code>(o-[^<]+)</code>", table)
    assert shown == placed[::-1] + [f"o-old-{e:05d}" for e in range(epoch - 1, epoch - 21, -1)]
    assert table.count("<button>cancel</button>") == 23
    assert "all of them: <code>GET /api/v1/orders</code>" in page


def test_migration_0005_fills_the_references_of_stored_readings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(books.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        old = [encode(reading("m-a", 3, 1_234, 56)), b"not cbor"]
        for k, raw in enumerate(old):  # the columns a 0004 database has
            connection.exec_driver_sql(
                "INSERT INTO ledger_batch_readings (hub_id, epoch, idx, raw, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                ("hub-1", 9, k, raw, b"\0" * 64),
            )
    engine.dispose()
    upgraded = books.connect(url)  # migrates to the newest revision
    r = books.batch_readings
    with upgraded.connect() as c:
        got = c.execute(
            select(r.c.idx, r.c.meter_id, r.c.seq, r.c.import_wh, r.c.export_wh).order_by(r.c.idx)
        ).all()
    assert [tuple(g) for g in got] == [(0, "m-a", 3, 1_234, 56), (1, "", 0, 0, 0)]
    upgraded.dispose()


def test_bench_growth_prints_empty_and_year_figures() -> None:
    from services import gridtokenx

    done = gridtokenx("bench", "growth", "--epochs", "40", "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = __import__("json").loads(done.stdout)
    assert set(figures) == {"empty", "year", "epochs_of_history"}
    for run in ("empty", "year"):
        assert figures[run]["orders_per_s"] > 0 and figures[run]["epoch_ms"] > 0
        assert figures[run]["me_page_ms"] > 0
        for page in ("wallet", "trades_page", "readings_page", "audit_page", "users_page"):
            assert figures[run][f"{page}_ms"] > 0, page
    assert figures["year"]["rows"] == {
        "epochs": 40,
        "orders": 1_200,
        "escrows": 1_200,
        "trades": 1_200,
        "refunds": 40,
        "readings": 3_600,
        "audit_log": 1_200,
        "account_entries": 40 * 33,  # the household's 3 accounts and 30 other wallets
    }


def test_the_close_sweeps_pending_intents_by_their_index_after_analyze(site: Site) -> None:
    """Closed escrow rows and the table's statistics (ANALYZE): the sweep at every close
    finds its pending intents by an index (SQLite had scanned the table, the status index
    judged useless for `status = ?`: 93 ms a close at a year), and sweeps the one pending
    intent."""
    engine = site.platform.books
    rows = [
        {"order_id": f"y{k}", "owner": "o", "asset": "thb", "escrowed": 1, "status": "closed"}
        for k in range(3_000)
    ]
    rows.append(
        {"order_id": "p1", "owner": "o", "asset": "thb", "escrowed": 1, "status": "pending"}
    )
    books.add_rows(engine, books.orders, rows)
    with engine.begin() as c:
        c.exec_driver_sql("ANALYZE")
    seen: list[str] = []

    def keep(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM ledger_orders" in statement and "pending" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", keep)
    try:
        swept = site.trading.exchange.sweep_intents(site.trading.market.epoch)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert swept == 1  # p1's transfer never landed: the intent is deleted
    assert len(seen) == 1
    with engine.connect() as c:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r[3]) for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + seen[0]))
            assert plan.startswith("SEARCH ledger_orders USING INDEX ledger_orders_"), plan
        else:  # PostgreSQL's statistics know 'pending' is rare: its own plan, an index's
            plan = " ".join(str(r[0]) for r in c.exec_driver_sql("EXPLAIN " + seen[0]))
            assert "Seq Scan" not in plan, plan
        assert c.execute(select(books.orders.c.order_id).where(books.PENDING_INTENT)).all() == []


def test_the_account_page_says_there_is_more_only_when_there_is(site: Site) -> None:
    s = site
    home = signup(s.client, "m@x.org")
    other = "8" * 44
    s.client.cookies.set("gtx_access", home["access_token"])
    note = "all of them: <code>GET /api/v1/trades</code>"
    books.add_rows(
        s.platform.books, books.trades, [trade(e, other, home["wallet"]) for e in range(1, 21)]
    )
    page = s.client.get("/me").text
    assert page.count("<td>sell</td>") == 20 and note not in page  # exactly a page: all shown
    books.add_rows(s.platform.books, books.trades, [trade(21, other, home["wallet"])])
    page = s.client.get("/me").text
    assert page.count("<td>sell</td>") == 20 and note in page
