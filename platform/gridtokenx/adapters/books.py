"""The platform's books of what the chain must agree with: batches and their readings,
meters and owners, orders with their escrow, cleared trades and refunds.

SQLAlchemy Core; SQLite by default, PostgreSQL when the URL says so. `gridtokenx audit`
reconciles these rows with the chain, so a row changed behind the platform's back shows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)

metadata = MetaData()

meters = Table(
    "ledger_meters",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("owner", String(44), nullable=False),  # the owner's wallet (base58)
    Column("status", String(16), nullable=False, server_default="active"),
)
Index("ledger_meters_owner", meters.c.owner)  # a household's meters (its readings' page)
hubs = Table(
    "ledger_hubs",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),  # its batch and oracle key
    Column("token_sha256", LargeBinary(32), nullable=False),  # its API token, hashed
    Column("status", String(16), nullable=False, server_default="active"),
)
batches = Table(
    "ledger_batches",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("root", LargeBinary(32), nullable=False),
    Column("header", LargeBinary, nullable=False),
    Column("hub_signature", LargeBinary(64), nullable=False),
    Column("hub_key", LargeBinary(32), nullable=False),
)
batch_readings = Table(
    "ledger_batch_readings",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("raw", LargeBinary, nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    # what the raw reading says, so that a meter's readings are found by index
    Column("meter_id", String(64)),
    Column("seq", BigInteger),
    Column("import_wh", BigInteger),
    Column("export_wh", BigInteger),
)
Index(  # a meter's readings newest first, a page at a time by (epoch, idx, hub_id)
    "ledger_batch_readings_meter_page",
    batch_readings.c.meter_id,
    batch_readings.c.epoch,
    batch_readings.c.idx,
    batch_readings.c.hub_id,
)
orders = Table(
    "ledger_orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("owner", String(44), nullable=False),
    Column("asset", String(3), nullable=False),  # what is escrowed: grx (sell), thb (buy)
    Column("escrowed", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # open | closed
)
Index("ledger_orders_status", orders.c.status)
# the escrow intents a crash may have cut short (the sweep's reading at every close): a
# handful of rows, where ANALYZE tells SQLite that any one status is most of a year's table
# and it scans the whole of it for `status = ?` (93 ms a sweep at a year, measured)
PENDING_INTENT = text("ledger_orders.status = 'pending'")
_pending = text("status = 'pending'")
Index("ledger_orders_pending", orders.c.order_id, sqlite_where=_pending, postgresql_where=_pending)
trades = Table(
    "ledger_trades",
    metadata,
    Column("epoch", BigInteger, primary_key=True),
    Column("trade_id", String(64), primary_key=True),
    Column("buy_id", String(64), nullable=False),
    Column("sell_id", String(64), nullable=False),
    Column("buyer", String(44), nullable=False),
    Column("seller", String(44), nullable=False),
    Column("wh", BigInteger, nullable=False),
    Column("buyer_paid", BigInteger, nullable=False),
    Column("seller_net", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False),
    Column("wheeling", BigInteger, nullable=False),
    # the rates the amounts above were computed from (units.receipt), for statements
    Column("price", BigInteger),  # uTHB per kWh
    Column("wheeling_rate", BigInteger),  # uTHB per kWh
    Column("fee_bps", Integer),
)
Index("ledger_trades_buy", trades.c.buy_id)
Index("ledger_trades_sell", trades.c.sell_id)
# a wallet's trades newest first, a page at a time by (epoch, trade_id): GET /trades, /me
Index("ledger_trades_buyer_page", trades.c.buyer, trades.c.epoch, trades.c.trade_id)
Index("ledger_trades_seller_page", trades.c.seller, trades.c.epoch, trades.c.trade_id)
refunds = Table(
    "ledger_refunds",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("kind", String(8), nullable=False),  # epoch (paid in the settlement) | cancel
    Column("owner", String(44), nullable=False),
    Column("asset", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
)
Index("ledger_refunds_epoch", refunds.c.epoch, refunds.c.kind)

cosign_pending = Table(
    "cosign_pending",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("idx", Integer, primary_key=True),  # the proposal's place: the hub signs in order
    Column("memo", Text, nullable=False),
    Column("message", LargeBinary, nullable=False),  # the transaction message to co-sign
)

# Every account a landed transaction names (its programs aside), by the transaction's place
# in the chain's history: a wallet's transactions newest first by the primary key, however
# long the chain (adapters/ledger_index.py keeps it caught up; GET /wallet, /me read it).
account_entries = Table(
    "ledger_account_entries",
    metadata,
    Column("account", String(44), primary_key=True),
    Column("pos", BigInteger, primary_key=True),  # its index in the chain's history
    Column("signature", String(88), nullable=False),
    Column("memos", Text, nullable=False),  # JSON list of its memo texts
)

# the chain's certificates as their memos leave them (ledger_index.catch_up_certificates), so
# a holder's page is one index range, whatever the chain's length
certificates = Table(
    "ledger_certificates",
    metadata,
    Column("mint", String(44), primary_key=True),
    Column("pos", BigInteger, nullable=False),  # its issue's index in the chain's history
    Column("meter_id", Text, nullable=False),
    Column("period", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("from_wh", BigInteger, nullable=False),
    Column("to_wh", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("holder", String(44), nullable=False),
)
Index(
    "ledger_certificates_holder_page",
    certificates.c.holder,
    certificates.c.pos,
    certificates.c.mint,
)


MIGRATIONS = Path(__file__).parent.parent / "migrations"


def pool_for(url: str) -> dict[str, int]:
    """Connections kept open: every request thread may hold one at once (the API runs up
    to 256), and a connection opened past the pool is closed again after its use, so a
    pool smaller than the concurrency opens and closes one per request (on SQLite with its
    PRAGMAs: most of a placement's time once, measured). PostgreSQL counts each against
    its `max_connections` (100 by default), shared by every instance: fewer, more shared."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        return {}  # one connection per thread (SQLAlchemy's own pool for a memory database)
    if url.startswith("sqlite"):
        return {"pool_size": 64, "max_overflow": 256}
    return {"pool_size": 12, "max_overflow": 24}


def connect(url: str) -> Engine:
    """An engine with the platform's schema migrated to the newest revision (Alembic);
    SQLite in WAL mode with full sync, so a commit survives a power cut, in a file only its
    owner may read."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)  # users' emails and password hashes: the owner's only (SQLite
        path.chmod(0o600)  # gives its -wal and -shm files the database file's mode)
    engine = create_engine(url, **pool_for(url))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def durable(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return engine


def add_rows(engine: Engine, table: Table, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        with engine.begin() as c:
            c.execute(insert(table), list(rows))


def rows(engine: Engine, table: Table, order: Iterable[str] = ()) -> list[dict[str, Any]]:
    with engine.connect() as c:
        query = select(table).order_by(*(table.c[name] for name in order))
        return [dict(row._mapping) for row in c.execute(query)]


CHUNK = 500  # ids per IN (...) list
T = TypeVar("T")


def in_chunks(ids: Sequence[T]) -> Iterator[Sequence[T]]:
    """`ids` CHUNK at a time: each one IN (...) list of a bounded size (SQLite's and
    psycopg's limits on a statement's parameters)."""
    for k in range(0, len(ids), CHUNK):
        yield ids[k : k + CHUNK]


def released_of(c: Connection, order_ids: Collection[str]) -> dict[str, int]:
    """What these orders' escrow has paid out (trades and refunds), by indexed lookups."""
    out: dict[str, int] = {}
    for chunk in in_chunks(sorted(order_ids)):
        queries = (
            select(trades.c.buy_id, func.sum(trades.c.buyer_paid))
            .where(trades.c.buy_id.in_(chunk))
            .group_by(trades.c.buy_id),
            select(trades.c.sell_id, func.sum(trades.c.wh))
            .where(trades.c.sell_id.in_(chunk))
            .group_by(trades.c.sell_id),
            select(refunds.c.order_id, refunds.c.amount).where(refunds.c.order_id.in_(chunk)),
        )
        for query in queries:
            for order_id, amount in c.execute(query).all():
                out[str(order_id)] = out.get(str(order_id), 0) + int(amount)
    return out


def released(engine: Engine) -> dict[str, int]:
    """What every order's escrow has paid out: its trades and its refund (the audit's
    whole-book view; the market uses `released_of`)."""
    out: dict[str, int] = {}
    for t in rows(engine, trades):
        out[str(t["buy_id"])] = out.get(str(t["buy_id"]), 0) + int(t["buyer_paid"])
        out[str(t["sell_id"])] = out.get(str(t["sell_id"]), 0) + int(t["wh"])
    for r in rows(engine, refunds):
        out[str(r["order_id"])] = out.get(str(r["order_id"]), 0) + int(r["amount"])
    return out
