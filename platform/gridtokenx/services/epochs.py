"""Epochs: closed on the clock, cleared, checked against the grid, settled and recorded
(`tick`, `close_epoch`), and after a restart recovered (`recover`). Part of `Trading`
(services/trading.py).

Epoch n covers [n * epoch_s, (n + 1) * epoch_s) of the clock. The pipeline of an epoch is
close -> clear -> settle -> publish, and each step is idempotent: the trades go to the books
keyed by epoch, settlement parts are found on the chain by their memos, and the epoch row
is written last. After a crash, `recover` clears and settles any past epoch left unsettled
(clearing is deterministic: the same orders give the same trades), gives back the escrow
of any order the crash left half-placed, and rebuilds the current epoch's book from the
database. Under CDA each execution is written with the order that made it, so a crash
loses no match.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import exists, func, insert, select, update

from gridtokenx import auditlog
from gridtokenx.adapters import books, idempotency
from gridtokenx.adapters.events import Event
from gridtokenx.adapters.tables import epochs, market_executions, market_orders, users
from gridtokenx.market.engine import EpochOutcome, Market
from gridtokenx.services import suspension
from gridtokenx.services.exchange import Exchange
from gridtokenx.services.market_base import (
    CANCELLING,
    LIVE,
    STALE_CLAIM_S,
    STALE_INTENT_MS,
    MarketBase,
    order_of,
)
from gridtokenx.services.uow import UnitOfWork

if TYPE_CHECKING:
    from gridtokenx.services.trading import Trading


class Epochs(MarketBase):
    """Closing, clearing, settling and recovering epochs."""

    # -- epochs ------------------------------------------------------------------------------
    def tick(self) -> list[int]:
        """Close every epoch whose time is over (the scheduler calls this every second).
        A halted market does not close: its orders wait for `resume`."""
        closed: list[int] = []
        if not self.leading:
            return closed
        with self.lock:
            if self.shared:  # orders and cancels other instances took
                self._sequence(self.market, self.exchange, self.market.epoch)
            while self.market.epoch < self.current_epoch() and self.market.halted is None:
                closed.append(self.close_epoch())
            if closed:
                suspension.freeze_pending(self.platform)  # freezes a co-signer did not sign
        return closed

    def close_epoch(self) -> int:
        """The epoch's pipeline: take in other instances' orders, clear, check, settle."""
        # never clear against a frozen account (its cancels go through `Trading.cancel`)
        suspension.cancel_suspended(cast("Trading", self))
        epoch = self.market.epoch
        if self.shared:  # no instance places into it from now on; take in what they did
            self._set_open_epoch(max(epoch + 1, self.current_epoch()))
            self._sequence(self.market, self.exchange, epoch)
        curtail = None
        if self.grid is not None:
            step = self.grid.step_of(self.ends_at(epoch))

            def curtail(trades: list[Any]) -> list[int]:
                traders = {t.seller for t in trades} | {t.buyer for t in trades}
                meter_of = self.meters_of_users(traders)
                return list(self.grid.curtail(epoch, step, trades, meter_of))

        # the unit of work: trades and refunds booked, settled on the ledger, the epoch recorded
        with UnitOfWork(self.engine, self.platform.dep) as uow:
            outcome, signatures = self.exchange.clear(curtail, uow)
            self._record(uow, epoch, outcome, signatures)
        for event in uow.events:
            self.publish(event)
        self._sweep(epoch)
        self.market.epoch = max(self.market.epoch, self.current_epoch())
        if self.shared and self.market.epoch != max(epoch + 1, self.current_epoch()):
            self._set_open_epoch(self.market.epoch)  # e.g. a breaker halt stays on `epoch`
        return epoch

    def _record(
        self, uow: UnitOfWork, epoch: int, outcome: EpochOutcome, signatures: list[str]
    ) -> None:
        """The settled epoch in `uow`: its orders' final states, its row, its audit entry,
        and its events (`clearing`, then the next `epoch`)."""
        filled: dict[str, int] = {}
        for t in outcome.trades:
            filled[t.buy_id] = filled.get(t.buy_id, 0) + t.quantity_wh
            filled[t.sell_id] = filled.get(t.sell_id, 0) + t.quantity_wh
        c = uow.c
        for order_id, status in outcome.closed_orders.items():
            c.execute(
                update(market_orders)
                .where(market_orders.c.order_id == order_id)
                .values(status=status.value, filled_wh=filled.get(order_id, 0))
            )
        c.execute(
            update(market_orders)
            .where(market_orders.c.epoch == epoch, market_orders.c.status.in_(LIVE))
            .values(status="expired")
        )
        values = {
            "state": "halted" if outcome.halted else "settled",
            "clearing_price": outcome.clearing_price,
            "volume_wh": outcome.volume_wh,
            "trades": len(outcome.trades),
            "transactions": json.dumps(signatures),
            "closed_at": int(self.clock()),
        }
        if c.execute(select(epochs.c.epoch).where(epochs.c.epoch == epoch)).first() is None:
            c.execute(insert(epochs).values(epoch=epoch, **values))
        elif not outcome.halted:  # a breaker-halted epoch, cleared after the resume
            c.execute(update(epochs).where(epochs.c.epoch == epoch).values(**values))
        auditlog.append_many(
            c,
            [
                (
                    "scheduler",
                    "epoch.settle",
                    {
                        "epoch": epoch,
                        "trades": len(outcome.trades),
                        "transactions": len(signatures),
                    },
                )
            ],
        )
        uow.emit(
            Event(
                "clearing",
                {
                    "epoch": epoch,
                    "clearing_price": outcome.clearing_price,
                    "volume_wh": outcome.volume_wh,
                    "trades": len(outcome.trades),
                    "transactions": signatures,
                },
            )
        )
        uow.emit(
            Event(
                "epoch",
                {"epoch": self.current_epoch(), "ends_at": self.ends_at(self.current_epoch())},
            )
        )

    def meters_of_users(self, user_ids: Collection[str]) -> dict[str, str]:
        """user id -> the meter its wallet owns (the first by id, if several), of these
        users (an epoch's traders: indexed lookups, not the site's registry)."""
        m = books.meters
        user_of: dict[str, str] = {}  # wallet -> user id
        first: dict[str, str] = {}
        with self.engine.connect() as c:
            for chunk in books.in_chunks(sorted(user_ids)):
                query = select(users.c.wallet, users.c.user_id).where(users.c.user_id.in_(chunk))
                user_of.update({w: u for w, u in c.execute(query) if w is not None})
            for chunk in books.in_chunks(sorted(user_of)):
                query = (
                    select(m.c.owner, func.min(m.c.meter_id))
                    .where(m.c.owner.in_(chunk))
                    .group_by(m.c.owner)
                )
                first.update({user_of[owner]: meter_id for owner, meter_id in c.execute(query)})
        return first

    def epoch_row(self, epoch: int) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(epochs).where(epochs.c.epoch == epoch)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["transactions"] = json.loads(out["transactions"] or "[]")
        with self.engine.connect() as c:
            trades = c.execute(
                select(books.trades)
                .where(books.trades.c.epoch == epoch)
                .order_by(books.trades.c.trade_id)
            ).all()
        out["trades_list"] = [
            {k: v for k, v in t._mapping.items() if k not in ("buyer", "seller")} for t in trades
        ]
        return out

    def recent_epochs(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(epochs).order_by(epochs.c.epoch.desc()).limit(limit)).all()
        return [
            {**dict(r._mapping), "transactions": json.loads(r.transactions or "[]")} for r in rows
        ]

    # -- restart -----------------------------------------------------------------------------
    def _load(self, market: Market, exchange: Exchange, epoch: int) -> None:
        """Rebuild an epoch's book from the database: its live orders (with what they have
        filled; resting orders never cross, so nothing matches again) and, under CDA, the
        executions persisted when they happened."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(market_orders)
                .where(
                    market_orders.c.epoch == epoch,
                    market_orders.c.status.in_(LIVE),
                    market_orders.c.seq > 0,
                )
                .order_by(market_orders.c.seq, market_orders.c.created_at)
            ).all()
        for r in rows:
            market.place(order_of(r))
        exchange.load(epoch)
        # orders other instances placed that no sequencer entered yet (seq 0), and cancels
        self._sequence(market, exchange, epoch, loading=True)

    def _unsettled_epochs(self) -> list[int]:
        """Past epochs a crash left unsettled: those with live orders, and those after the
        last recorded epoch with CDA executions (all of whose orders may have filled)."""
        with self.engine.connect() as c:
            done = c.execute(select(func.max(epochs.c.epoch))).scalar_one()
            live = c.execute(
                select(market_orders.c.epoch)
                .where(market_orders.c.status.in_((*LIVE, CANCELLING)))
                .distinct()
            ).scalars()
            executed = c.execute(
                select(market_executions.c.epoch)
                .where(market_executions.c.epoch > (-1 if done is None else done))
                .distinct()
            ).scalars()
            found = set(live) | set(executed)
            recorded = set(
                c.execute(select(epochs.c.epoch).where(epochs.c.epoch.in_(found))).scalars()
            )
        return sorted(e for e in found - recorded if e < self.market.epoch)

    def _sweep(self, epoch: int) -> None:
        """Settle the escrow intents of placements that died. SQLite has one process, and
        this runs under its lock: every pending intent is dead. On PostgreSQL other
        instances may be placing now: only intents older than any placement runs."""
        older = None
        if self.engine.dialect.name != "sqlite":
            older = int(time.time() * 1000) - STALE_INTENT_MS
        self.exchange.sweep_intents(epoch, older)

    def recover(self) -> None:
        with self.lock:
            # claims of Idempotency-Keys whose request a crash cut short (nothing written)
            idempotency.release_stale(self.engine, int(self.clock()) - STALE_CLAIM_S)
            for epoch in self._unsettled_epochs():
                market = Market(self.config, epoch=epoch)
                exchange = self._exchange(market)
                self._load(market, exchange, epoch)
                with UnitOfWork(self.engine, self.platform.dep) as uow:
                    outcome, signatures = exchange.clear(None, uow)
                    self._record(uow, epoch, outcome, signatures)
                for event in uow.events:
                    self.publish(event)
            self._load(self.market, self.exchange, self.market.epoch)
            suspension.freeze_pending(self.platform)
            # escrow intents a crash cut short: refunded if their transfer landed, else gone
            self._sweep(self.market.epoch)
            # escrow opened for an order the crash left out of the market (rows written
            # before intents were opened with their order row): give it back
            with self.engine.connect() as c:
                orphans = c.execute(
                    select(books.orders.c.order_id).where(
                        books.orders.c.status == "open",
                        ~exists().where(market_orders.c.order_id == books.orders.c.order_id),
                    )
                ).scalars()
                left_out = list(orphans)
            if left_out:  # closed with a cancel refund, as a cancel is
                self.exchange.refund_all(self.market.epoch, left_out, kind="cancel", pending=[])
