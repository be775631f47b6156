"""The platform's own tables (beside the ledger books in `books.py`, same metadata):
users and their refresh tokens, the market's orders and epochs, idempotent responses and
the hash-chained audit log."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, LargeBinary, String, Table, Text

from gridtokenx.adapters.books import metadata

users = Table(
    "users",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("email", String(254), unique=True),
    Column("password_hash", String(200)),  # Argon2id; None for wallet-only users
    Column("role", String(16), nullable=False),
    Column("wallet", String(44), nullable=False, unique=True),
    Column("custodial", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # active | suspended
    Column("created_at", BigInteger, nullable=False),
)
# GET /admin/users: oldest first a page at a time by (created_at, user_id), all or one status
Index("users_page", users.c.created_at, users.c.user_id)
Index("users_status_page", users.c.status, users.c.created_at, users.c.user_id)
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_sha256", LargeBinary(32), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("family", String(36), nullable=False),  # a login; reuse revokes the family
    Column("expires_at", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False),
    Column("revoked", Boolean, nullable=False),
)
nonces = Table(
    "wallet_nonces",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("wallet", String(44), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
market_orders = Table(
    "market_orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("user_id", String(36), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("side", String(4), nullable=False),
    Column("quantity_wh", BigInteger, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("zone", String(64), nullable=False),
    Column("tif", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("filled_wh", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
Index("market_orders_user_epoch", market_orders.c.user_id, market_orders.c.epoch)
# GET /orders: a user's orders newest first, a page at a time by (epoch, seq, order_id)
Index(
    "market_orders_user_page",
    market_orders.c.user_id,
    market_orders.c.epoch,
    market_orders.c.seq,
    market_orders.c.order_id,
)
Index("market_orders_epoch_status", market_orders.c.epoch, market_orders.c.status)
Index("market_orders_status", market_orders.c.status)
Index("market_orders_epoch_seq", market_orders.c.epoch, market_orders.c.seq)
market_executions = Table(
    "market_executions",
    metadata,
    Column("epoch", BigInteger, primary_key=True),
    Column("idx", Integer, primary_key=True),  # the execution's place in its epoch
    Column("buy_id", String(64), nullable=False),
    Column("sell_id", String(64), nullable=False),
    Column("buyer", String(36), nullable=False),  # user ids, as the market knows them
    Column("seller", String(36), nullable=False),
    Column("buyer_zone", String(64), nullable=False),
    Column("seller_zone", String(64), nullable=False),
    Column("quantity_wh", BigInteger, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("wheeling_rate", BigInteger, nullable=False),
    Column("fee_bps", Integer, nullable=False),
)
epochs = Table(
    "epochs",
    metadata,
    Column("epoch", BigInteger, primary_key=True),
    Column("state", String(16), nullable=False),  # cleared | settled | halted
    Column("clearing_price", BigInteger),
    Column("volume_wh", BigInteger, nullable=False),
    Column("trades", Integer, nullable=False),
    Column("transactions", Text),  # JSON list of settlement signatures
    Column("closed_at", BigInteger, nullable=False),
)
idempotency = Table(
    "idempotency",
    metadata,
    Column("user_id", String(36), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("status", Integer, nullable=False),  # 0 while claimed, then the response's
    Column("body", Text, nullable=False),
    Column("request_sha256", LargeBinary(32)),  # the request the key was first used for
    Column("claimed_at", BigInteger),
)
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),  # JSON: e.g. the market parameters an admin set
)
