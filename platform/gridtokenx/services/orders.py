"""Placing an order, with an optional Idempotency-Key.

The key is claimed (one insert, see `adapters.idempotency`) before anything is placed, so
of concurrent requests with one key exactly one places the order and escrows; the others
wait for its response and return it. The response is recorded in the transaction that
writes the order row, so a retry after a crash finds either both or neither. A refused
request (bad input, no funds) changes nothing and gives its key back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from gridtokenx.adapters import idempotency
from gridtokenx.errors import IdempotencyKeyInProgress, IdempotencyKeyReused

if TYPE_CHECKING:
    from gridtokenx.services.trading import Trading

WAIT_S = 10.0  # how long a duplicate waits for the first request's response
POLL_S = 0.005


@dataclass(frozen=True)
class OrderRequest:
    side: str
    quantity_wh: int
    price: int
    zone: str = "default"
    tif: str = "GFE"


def place_order(
    trading: Trading,
    user_id: str,
    request: OrderRequest,
    key: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    family: str | None = None,
) -> dict[str, Any]:
    """The order row placed for this request (the first one's, for a repeated key).
    `family`: the caller's login, checked with the batch (see `Trading.place`)."""
    if not key:
        return trading.place(user_id, **asdict(request), family=family)
    engine = trading.engine
    sha = idempotency.fingerprint(asdict(request))
    deadline = time.monotonic() + WAIT_S
    while True:
        seen = idempotency.claim(engine, user_id, key, sha, int(trading.clock()))
        if seen is None:
            break
        if seen.request_sha256 is not None and seen.request_sha256 != sha:
            raise IdempotencyKeyReused(message="this Idempotency-Key was used for another order")
        if seen.status != idempotency.PENDING:
            return dict(json.loads(seen.body))
        if time.monotonic() > deadline:
            raise IdempotencyKeyInProgress(message="the first request with this key is running")
        sleep(POLL_S)

    def record(connection: Any, row: dict[str, Any]) -> None:
        idempotency.complete(connection, user_id, key, 201, row)

    try:
        return trading.place(user_id, **asdict(request), record=record, family=family)
    except BaseException:
        idempotency.release(engine, user_id, key)
        raise
