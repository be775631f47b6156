"""The market's errors: one small hierarchy, each carrying a stable machine-readable code.

They are kinds of the platform's `CodedError` (a pure module, no I/O), so the HTTP edge maps
them like every other refusal: by kind, never by code.
"""

from __future__ import annotations

from gridtokenx.errors import CodedError, Conflict, Forbidden, InvalidInput, RateLimited


class MarketError(CodedError):
    """Base of every market error; `code` is stable and documented in README."""

    code = "market_error"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


class OrderRejected(MarketError):
    """An order (or a cancel) was refused; nothing in the market changed.

    The code decides the kind (`OrderRejected(code, message)` builds the matching subclass):
    too many orders is a rate limit, a halted market a conflict with its state, anything else
    invalid input."""

    def __new__(cls, code: str, message: str) -> OrderRejected:
        kind = _REJECTION_KINDS.get(code, OrderInvalid) if cls is OrderRejected else cls
        return super().__new__(kind, code, message)


class OrderInvalid(OrderRejected, InvalidInput):
    """The order breaks a market rule (price band, size, zone, funds, ownership...)."""


class OrderRateLimited(OrderRejected, RateLimited):
    """`order_rate_limited`: the per-user, per-epoch order limit is reached."""

    def __init__(self, code: str, message: str) -> None:
        RateLimited.__init__(self, code, message, retry_after=1)


class MarketHalted(OrderRejected, Conflict):
    """`market_halted`: the operator stopped trading; retry after the resume."""


class NotApproved(OrderRejected, Forbidden):
    """`not_approved`: the account waits for an operator's (or the KYC step's) approval."""


class AccountSuspended(OrderRejected, Forbidden):
    """`suspended`: an operator suspended the account; it trades again once re-approved."""


class EpochMoved(OrderRejected, Conflict):
    """`epoch_moved`: the epoch closed while the order was checked, twice (the first time
    the order is placed again in the new epoch, `Trading._flush_batch`); place it again."""


_REJECTION_KINDS: dict[str, type[OrderRejected]] = {
    "epoch_moved": EpochMoved,
    "order_rate_limited": OrderRateLimited,
    "market_halted": MarketHalted,
    "not_approved": NotApproved,
    "suspended": AccountSuspended,
}


class WheelingError(MarketError, InvalidInput):
    """A wheeling matrix file or value is malformed."""
