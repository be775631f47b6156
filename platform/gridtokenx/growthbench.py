"""`gridtokenx bench growth`: the platform's costs on an empty database and on one holding
a year of history, to show they do not grow with it.

Each run builds a platform in a temporary directory (the embedded ledger, SQLite books)
with the same households signed up through the API, and measures on it:

- `orders_per_s`: order placements through the service (validation, escrow on the ledger,
  the order row, the audit log), one after another;
- `epoch_ms`: closing the epoch those orders are in: clearing, the trades and refunds in the
  books, settlement on the ledger;
- `me_page_ms`: the median of rendering the account page (`/me`) of a household whose year
  of trades and readings is in the books;
- `wallet_ms`, `trades_page_ms`, `readings_page_ms`, `audit_page_ms`, `users_page_ms`: the
  medians of the first page of `GET /api/v1/wallet`, `/trades`, `/readings` (the household's),
  `/admin/audit` and `/admin/users`; `audit_first_page_ms` is the first audit page, which
  verifies up to 50,000 entries of the never-checked seeded log, `audit_catch_up_ms` the
  checkpoint's walk to the newest entry (a live site's follows the appends), before the
  audit pages are measured.

The year is seeded straight into the books (bulk inserts, not through the service):
`epochs` x (30 orders, 30 trades, 90 batch readings), one refund per epoch, an audit-log
entry per order, one settlement transaction per epoch in the per-account ledger record
(naming the household's wallet and token accounts and 30 other wallets); a twentieth of the
orders and trades, and one meter's readings, are the measured household's. Its rows are history
only: settled epochs and closed orders.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from solders.pubkey import Pubkey
from sqlalchemy import Engine, Table, insert, select

EPOCH_S = 900.0
YEAR_EPOCHS = 35_040
ORDERS_PER_EPOCH, READINGS_PER_EPOCH = 30, 90
HOUSEHOLDS = 10  # measuring users: 5 sellers and 5 buyers
ORDERS_EACH = 20  # within the 50 orders per user and epoch
CHUNK = 20_000


class _Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time() // EPOCH_S) * EPOCH_S + 1)

    def __call__(self) -> float:
        return self.now


def run(epochs: int = YEAR_EPOCHS) -> dict[str, Any]:
    os.environ.setdefault("GTX_KEYSTORE_KEY", secrets.token_hex(32))
    with tempfile.TemporaryDirectory() as tmp:
        empty = _measure(Path(tmp) / "empty", 0)
        year = _measure(Path(tmp) / "year", epochs)
    return {"empty": empty, "year": year, "epochs_of_history": epochs}


def _measure(data: Path, epochs: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from gridtokenx import auditlog
    from gridtokenx.bootstrap import Settings, build

    os.environ.pop("SOLANA_RPC_URL", None)
    clock = _Clock()
    admin = secrets.token_hex(16)
    settings = Settings(
        data,
        epoch_s=EPOCH_S,
        admin_token=admin,
        auto_approve=True,
        jwt_secret=secrets.token_bytes(32),
        limits_per_minute=(10**9, 10**9),
    )
    instance = build(settings, clock)
    platform, trading = instance.platform, instance.trading
    app = instance.app()
    client = TestClient(app)
    # the measured household signs up through the API (its page needs a login); the other
    # traders are custodial wallets made directly (a sign-up's password hash costs ~1 s)
    email, password = "home@example.org", "growth-password"
    home = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    token = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    users = [(home.json()["user_id"], home.json()["wallet"], token.json()["access_token"])]
    for k in range(1, HOUSEHOLDS):
        users.append((f"trader-{k}", str(platform.register_user(f"trader-{k}")), ""))
    _fund(platform, users)
    owner = Pubkey.from_string(users[0][1])
    home_accounts = [
        str(owner),
        *(str(m.account_of(owner)) for m in (platform.dep.grx, platform.dep.thb)),
    ]
    current = trading.current_epoch()
    seeded = _seed(platform.books, epochs, current, users[0], home_accounts) if epochs else {}

    start = time.perf_counter()
    for k in range(ORDERS_EACH):
        for n, (user_id, _wallet, _token) in enumerate(users):
            if n % 2 == 0:  # sellers ask 2.00-2.95 THB/kWh, buyers bid 3.00-3.95
                trading.place(user_id, "sell", 100, 2_000_000 + (k % 20) * 50_000)
            else:
                trading.place(user_id, "buy", 100, 3_000_000 + (k % 20) * 50_000)
    placed_s = time.perf_counter() - start
    epoch = trading.market.epoch
    clock.now += EPOCH_S
    start = time.perf_counter()
    assert trading.tick() == [epoch]
    epoch_s = time.perf_counter() - start
    client.cookies.set("gtx_access", users[0][2])
    pages = _median_ms(client, "/me", {})
    client.cookies.clear()
    home_h = {"Authorization": f"Bearer {users[0][2]}"}
    admin_h = {"Authorization": f"Bearer {admin}"}
    start = time.perf_counter()  # the first audit page verifies the chain up to its newest
    assert client.get("/api/v1/admin/audit", headers=admin_h).status_code == 200
    audit_first_s = time.perf_counter() - start
    start = time.perf_counter()  # then as a live site's checkpoint would be: at the newest
    while auditlog.verify_since_checkpoint(platform.books)[1] < _newest_seq(platform.books):
        pass
    audit_catch_up_s = time.perf_counter() - start
    lists = {
        "wallet_ms": _median_ms(client, "/api/v1/wallet", home_h),
        "trades_page_ms": _median_ms(client, "/api/v1/trades", home_h),
        "readings_page_ms": _median_ms(client, "/api/v1/readings", home_h),
        "audit_page_ms": _median_ms(client, "/api/v1/admin/audit", admin_h),
        "users_page_ms": _median_ms(client, "/api/v1/admin/users", admin_h),
    }
    platform.ledger.close()  # type: ignore[attr-defined]
    platform.books.dispose()
    orders = ORDERS_EACH * HOUSEHOLDS
    return {
        "orders_per_s": round(orders / placed_s, 1),
        "epoch_ms": round(epoch_s * 1000, 1),
        "me_page_ms": pages,
        **lists,
        "audit_first_page_ms": round(audit_first_s * 1000, 1),
        "audit_catch_up_ms": round(audit_catch_up_s * 1000, 1),
        "rows": seeded,
    }


def _newest_seq(engine: Engine) -> int:
    from gridtokenx.adapters.tables import audit_log

    with engine.connect() as c:
        newest = c.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1))
        return int(newest.scalar() or 0)


def _median_ms(client: Any, path: str, headers: dict[str, str], times: int = 15) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        answer = client.get(path, headers=headers)
        spent.append(time.perf_counter() - start)
        assert answer.status_code == 200, (path, answer.text)
    return round(statistics.median(spent) * 1000, 2)


def _fund(platform: Any, users: list[tuple[str, str, str]]) -> None:
    """Buyers get THB (the admin top-up), sellers GRX (minted by the oracles, as a batch)."""
    dep = platform.dep
    oracles = [dep.oracle(n) for n in ("oracle/platform", "oracle/grid-operator", "oracle/standby")]
    for n, (_user_id, wallet, _token) in enumerate(users):
        owner = Pubkey.from_string(wallet)
        if n % 2:
            dep.top_up(owner, 10**10, f"growth-{n}")
        else:
            ix = dep.grx.mint_ix(owner, 10**6, dep.oracle_multisig, [k.pubkey() for k in oracles])
            dep.ledger.send([ix], oracles)


def _seed(
    engine: Engine,
    epochs: int,
    current: int,
    household: tuple[str, str, str],
    accounts: list[str],
) -> dict[str, int]:
    """A year of settled history before `current`, partly the household's (`accounts`: its
    wallet and token accounts, named by each epoch's settlement transaction)."""
    from gridtokenx.adapters import books
    from gridtokenx.adapters.tables import audit_log, market_orders
    from gridtokenx.adapters.tables import epochs as epoch_rows
    from gridtokenx.wire.reading import Reading, encode

    user_id, wallet, _ = household
    first = current - epochs
    others = [f"{k:044d}" for k in range(50)]
    raw_cache: dict[int, bytes] = {}

    def mine(e: int, k: int) -> bool:
        return (e + k) % 20 == 0

    def orders() -> Iterator[dict[str, Any]]:
        for e in range(first, current):
            for k in range(ORDERS_PER_EPOCH):
                yield {
                    "order_id": f"y{e}-{k}",
                    "user_id": user_id if mine(e, k) else f"u{k}",
                    "epoch": e,
                    "seq": k + 1,
                    "side": "buy" if k % 2 else "sell",
                    "quantity_wh": 500,
                    "price": 3_000_000,
                    "zone": "default",
                    "tif": "gfe",
                    "status": "filled",
                    "filled_wh": 500,
                    "created_at": int(e * EPOCH_S),
                }

    def escrows() -> Iterator[dict[str, Any]]:
        for e in range(first, current):
            for k in range(ORDERS_PER_EPOCH):
                yield {
                    "order_id": f"y{e}-{k}",
                    "owner": wallet if mine(e, k) else others[k],
                    "asset": "thb" if k % 2 else "grx",
                    "escrowed": 1_500_000 if k % 2 else 500,
                    "status": "closed",
                }

    def trades() -> Iterator[dict[str, Any]]:
        for e in range(first, current):
            for k in range(ORDERS_PER_EPOCH):
                yield {
                    "epoch": e,
                    "trade_id": f"{e}-{k}",
                    "buy_id": f"y{e}-{k | 1}",
                    "sell_id": f"y{e}-{k & ~1}",
                    "buyer": wallet if mine(e, k | 1) else others[k | 1],
                    "seller": wallet if mine(e, k & ~1) else others[k & ~1],
                    "wh": 250,
                    "buyer_paid": 750_000,
                    "seller_net": 742_500,
                    "fee": 7_500,
                    "wheeling": 0,
                }

    def readings() -> Iterator[dict[str, Any]]:
        for e in range(first, current):
            for k in range(READINGS_PER_EPOCH):
                meter = "m-home" if k == 0 else f"m-{k}"
                import_wh = (e - first) * 10
                if k not in raw_cache or k == 0:
                    raw_cache[k] = encode(
                        Reading(meter, e - first + 1, e, import_wh, 0, 900, 2300, 1000, 1000, 5000)
                    )
                yield {
                    "hub_id": "hub-1",
                    "epoch": e,
                    "idx": k,
                    "raw": raw_cache[k],
                    "signature": bytes(64),
                    "meter_id": meter,
                    "seq": e - first + 1,
                    "import_wh": import_wh,
                    "export_wh": 0,
                }

    def settled() -> Iterator[dict[str, Any]]:
        for e in range(first, current):
            yield {
                "epoch": e,
                "state": "settled",
                "clearing_price": 3_000_000,
                "volume_wh": 250 * ORDERS_PER_EPOCH,
                "trades": ORDERS_PER_EPOCH,
                "transactions": json.dumps([]),
                "closed_at": int((e + 1) * EPOCH_S),
            }

    def account_entries() -> Iterator[dict[str, Any]]:
        # each epoch's settlement, before this chain's first transaction (negative places)
        for e in range(first, current):
            signature = f"{e:088d}"
            memos = json.dumps([f"gtx1 settle {e}"])
            for account in (*accounts, *others[:ORDERS_PER_EPOCH]):
                yield {
                    "account": account,
                    "pos": e - current,
                    "signature": signature,
                    "memos": memos,
                }

    def refunds() -> Iterator[dict[str, Any]]:
        for e in range(first, current):
            yield {
                "order_id": f"y{e}-1",
                "epoch": e,
                "kind": "epoch",
                "owner": others[1],
                "asset": "thb",
                "amount": 750_000,
            }

    with engine.connect() as c:  # the chain continues from the sign-ups' entries
        last = c.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
    start_seq, start_hash = (int(last.seq), bytes(last.hash)) if last else (0, bytes(32))

    def audit() -> Iterator[dict[str, Any]]:
        prev, seq = start_hash, start_seq
        for e in range(first, current):
            for k in range(ORDERS_PER_EPOCH):
                seq += 1
                ts, detail = int(e * EPOCH_S), json.dumps({"order_id": f"y{e}-{k}"})
                body = json.dumps([seq, ts, "u", "order.place", detail], separators=(",", ":"))
                digest = hashlib.sha256(prev + body.encode()).digest()
                yield {
                    "seq": seq,
                    "ts": ts,
                    "actor": "u",
                    "action": "order.place",
                    "detail": detail,
                    "prev_hash": prev,
                    "hash": digest,
                }
                prev = digest

    books.add_rows(
        engine, books.meters, [{"meter_id": "m-home", "public_key": bytes(32), "owner": wallet}]
    )
    counts = {}
    for name, table, rows in (
        ("epochs", epoch_rows, settled()),
        ("orders", market_orders, orders()),
        ("escrows", books.orders, escrows()),
        ("trades", books.trades, trades()),
        ("refunds", books.refunds, refunds()),
        ("readings", books.batch_readings, readings()),
        ("audit_log", audit_log, audit()),
        ("account_entries", books.account_entries, account_entries()),
    ):
        counts[name] = _bulk(engine, table, rows)
    with engine.begin() as c:  # as a database a year old would be: statistics, no WAL backlog
        c.exec_driver_sql("ANALYZE")
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return counts


def _bulk(engine: Engine, table: Table, rows: Iterator[dict[str, Any]]) -> int:
    done = 0
    batch: list[dict[str, Any]] = []
    with engine.begin() as c:
        for row in rows:
            batch.append(row)
            if len(batch) == CHUNK:
                c.execute(insert(table), batch)
                done += len(batch)
                batch = []
        if batch:
            c.execute(insert(table), batch)
            done += len(batch)
    return done
