"""A unit of work: one use case's database transaction and its ledger batch.

A use case reads top to bottom: validate; then `with UnitOfWork(engine, dep) as uow:` write
its rows in `uow.c` (audit entries too: the transaction comes from `auditlog.begin`), send
its ledger batch through `uow` (a batch's escrows, `lock`, or an epoch's settlement,
`settle`) and collect its events (`emit`); after the block, publish `uow.events`. The
ledger batch goes out inside the transaction, before its commit, so a crash between the
two leaves what the recovery already handles (pending escrow intents the sweep settles, an
epoch with no row that `recover` clears and settles again; both idempotent on the chain).
If the block raises, the transaction is rolled back and `events` is emptied: nothing is
announced that was not committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine

from gridtokenx import auditlog
from gridtokenx.adapters.events import Event
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import LedgerError
from gridtokenx.ledger.deployment import Deployment


class UnitOfWork:
    """`late`: the audit log's process lock is taken only at `hold()` (before the first
    write), not over the ledger I/O before it (`auditlog.begin_late`)."""

    def __init__(self, engine: Engine, dep: Deployment, late: bool = False) -> None:
        self.engine, self.dep, self.late = engine, dep, late
        self.events: list[Event] = []
        self._tx: AbstractContextManager[Any] | None = None
        self._c: Connection | None = None
        self._hold: Callable[[], None] | None = None

    @property
    def c(self) -> Connection:
        """The open transaction (only inside the `with` block)."""
        assert self._c is not None, "the unit of work is not entered"
        return self._c

    def __enter__(self) -> UnitOfWork:
        assert self._tx is None, "a unit of work is entered once"
        self.events = []
        if self.late:
            self._tx = auditlog.begin_late(self.engine)
            self._c, self._hold = self._tx.__enter__()
        else:
            self._tx = auditlog.begin(self.engine)
            self._c = self._tx.__enter__()
        return self

    def hold(self) -> None:
        """With `late`: take the audit log's lock now, kept to the commit."""
        if self._hold is not None:
            self._hold()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tx is not None
        tx, self._tx, self._c, self._hold = self._tx, None, None, None
        if kind is not None:
            self.events = []
        return tx.__exit__(kind, value, tb)

    def lock(self, escrows: Sequence[st.Escrow]) -> list[str | LedgerError]:
        """The batch's escrow transfers, packed into as few ledger transactions as fit."""
        return st.lock_many(self.dep, escrows)

    def settle(
        self, epoch: int, trades: Sequence[st.Trade], refunds: Sequence[st.Refund]
    ) -> list[str]:
        """The epoch's settlement (payouts and refunds from escrow); its signatures."""
        return st.settle_epoch(self.dep, epoch, trades, refunds)

    def emit(self, event: Event) -> None:
        """An event to publish once the transaction is committed."""
        self.events.append(event)
