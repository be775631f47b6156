"""Orders: placed in group commits (`place`: a batch of requests validated one by one,
escrowed together and written in one transaction), entered by the sequencer (`_sequence`),
cancelled and read. Part of `Trading` (services/trading.py).

A batch's placement (`_flush`) reads top to bottom: validate, then one unit of work
(`services/uow.py`: the database transaction and the ledger batch), then the events,
published once committed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, tuple_, update

from gridtokenx import auditlog
from gridtokenx.accounts import AuthUnauthorized
from gridtokenx.adapters.auth_tables import revoked_logins
from gridtokenx.adapters.events import Event
from gridtokenx.adapters.tables import market_orders, users
from gridtokenx.errors import Unavailable
from gridtokenx.market.engine import Market
from gridtokenx.market.errors import EpochMoved, OrderRejected
from gridtokenx.market.orders import Order
from gridtokenx.services.exchange import Entered, Exchange
from gridtokenx.services.market_base import (
    CANCELLING,
    LIVE,
    MAX_BATCH,
    MAX_ORDERS_PER_EPOCH,
    MarketBase,
    new_order,
    order_of,
)
from gridtokenx.services.uow import UnitOfWork


class _WriteFailed(Exception):
    """Some placements of a batch failed their own writes (each has its error)."""

    def __init__(self, placements: list[Placement]) -> None:
        super().__init__(f"{len(placements)} placements failed")
        self.placements = placements


log = logging.getLogger(__name__)


@dataclass(eq=False)
class Placement:
    """One request waiting in the group-commit queue (see `Trading.place`)."""

    user_id: str
    side: str
    quantity_wh: int
    price: int
    zone: str
    tif: str
    record: Callable[[Connection, dict[str, Any]], None] | None
    family: str | None = None  # the caller's login, checked at admission (None: checked)
    order: Order | None = None
    row: dict[str, Any] | None = None
    error: BaseException | None = None
    future: Future[dict[str, Any]] = field(default_factory=Future)

    def settle(self) -> None:
        """Its caller told: the row placed, or its own error."""
        if self.future.done():
            return
        if self.error is not None:
            self.future.set_exception(self.error)
        elif self.row is not None:
            self.future.set_result(self.row)
        else:
            self.future.set_exception(RuntimeError("the placement ended with no result"))


class Placing(MarketBase):
    """Placing, entering, cancelling and reading orders."""

    _queue: deque[Placement]
    _queued: threading.Condition
    _flushing: bool
    _closed: bool
    _committer: ThreadPoolExecutor

    # -- orders ----------------------------------------------------------------------------
    def place(
        self,
        user_id: str,
        side: str,
        quantity_wh: int,
        price: int,
        zone: str = "default",
        tif: str = "GFE",
        record: Callable[[Connection, dict[str, Any]], None] | None = None,
        family: str | None = None,
    ) -> dict[str, Any]:
        """Place an order with its escrow; `record` runs in the transaction that writes the
        order row (the Idempotency-Key's response is kept with the order, or neither).
        `family`: the caller's login, when its access token was only decoded
        (`Accounts.decode`): a revoked one is refused with the batch's other checks.

        Group commit: the placement joins a queue, and one flusher at a time takes a batch
        of it and places the whole batch with one intents commit, its escrow transfers
        packed into as few ledger transactions as fit (one fsync), and all its order rows,
        intents opened, Idempotency-Keys and audit entries in one database transaction
        (`_flush`). A calling thread flushes when no one else is; a flusher that leaves the
        queue non-empty hands it to the group-commit thread (`_drain`). Each caller returns
        once its order is durable and its escrow is on the ledger, or raises its own
        refusal."""
        waiting = Placement(user_id, side, quantity_wh, price, zone, tif, record, family)
        with self._queued:
            self._take_in(waiting)
        while not waiting.future.done():
            with self._queued:
                while self._flushing and not waiting.future.done():
                    self._queued.wait()
                if waiting.future.done():
                    break
                self._flushing = True  # this caller flushes one batch, then hands over
                batch = self._take()
            self._flush_batch(batch)
        return waiting.future.result()

    async def place_async(
        self,
        user_id: str,
        side: str,
        quantity_wh: int,
        price: int,
        zone: str = "default",
        tif: str = "GFE",
        family: str | None = None,
    ) -> dict[str, Any]:
        """`place` for a caller on an event loop: it waits for its group commit without a
        thread of its own (the group-commit thread flushes)."""
        return await asyncio.wrap_future(
            self.submit(user_id, side, quantity_wh, price, zone, tif, family)
        )

    def submit(
        self,
        user_id: str,
        side: str,
        quantity_wh: int,
        price: int,
        zone: str = "default",
        tif: str = "GFE",
        family: str | None = None,
    ) -> Future[dict[str, Any]]:
        """The placement queued for the group-commit thread; its future is done (in that
        thread) when the order is placed or refused. For callers that gather many answers
        at once (`api.fronts.PlacementServer`: one wake-up of its loop per batch)."""
        waiting = Placement(user_id, side, quantity_wh, price, zone, tif, None, family)
        with self._queued:
            self._take_in(waiting)
            start = not self._flushing
            self._flushing = True
        if start:
            self._committer.submit(self._drain)
        return waiting.future

    def _take_in(self, waiting: Placement) -> None:
        """Queue a placement (holding `_queued`), unless this instance is stopping."""
        if self._closed:
            raise Unavailable("stopping", "this instance is stopping: place the order again")
        self._queue.append(waiting)

    def close(self) -> None:
        """Take no more placements, let those queued be placed or refused (each caller gets
        its answer), then end the group-commit thread: a stopping instance drops no order
        it took."""
        with self._queued:
            self._closed = True
            while self._queue or self._flushing:
                self._queued.wait()
        self._committer.shutdown(wait=True)

    def _drain(self) -> None:
        with self._queued:
            batch = self._take()
        self._flush_batch(batch)

    def _flush_batch(self, batch: list[Placement]) -> None:
        """Flush one batch, tell its callers, then pass the flushing on: to the group-commit
        thread while placements wait, else to the next caller. A batch the epoch's close
        overtook (`epoch_moved`: nothing of it was placed) is placed again once, into the
        new epoch: its callers asked now, not in the epoch that ended."""
        try:
            self._flush(batch)
            moved = [p for p in batch if isinstance(p.error, EpochMoved)]
            if moved:
                for p in moved:
                    p.error = p.order = p.row = None
                self._flush(moved)
        finally:
            for p in batch:
                p.settle()
            with self._queued:
                if self._queue:
                    self._committer.submit(self._drain)  # still flushing
                else:
                    self._flushing = False
                self._queued.notify_all()

    def _take(self) -> list[Placement]:
        """The next batch from the queue, oldest first, at most one order of an owner (each
        is checked against the book with the owner's earlier orders in it)."""
        batch: list[Placement] = []
        owners: set[str] = set()
        rest: deque[Placement] = deque()
        while self._queue and len(batch) < MAX_BATCH:
            p = self._queue.popleft()
            if p.user_id in owners:
                rest.append(p)
            else:
                owners.add(p.user_id)
                batch.append(p)
        rest.extend(self._queue)
        self._queue = rest
        return batch

    def _flush(self, batch: list[Placement]) -> None:
        """Place a batch: each order checked on its own (approval, the rate limit, the
        book's rules, funds), the rest escrowed together and written in one transaction.
        The sequencer enters them into the book; another instance writes them with seq 0
        into the open epoch, for the sequencer to enter (`_sequence`), in the order placed."""
        escrowed: list[Placement] = []
        entered: list[Entered] = []
        turned: list[str] = []  # escrowed, then refused by the book (a breaker trip)
        with self.lock:
            epoch = self.market.epoch
            uow = UnitOfWork(self.engine, self.platform.dep, late=True)
            try:
                if self.leading:
                    self.tick()
                    market, exchange = self.market, self.exchange
                else:
                    self.follow()
                    market = self._owners_market([p.user_id for p in batch])
                    exchange = self._exchange(market)
                # validate: approval, the rate limit, the order's form
                placed = self._admit(batch, market.epoch)
                orders = [p.order for p in placed if p.order is not None]
                # the unit of work: escrows on the ledger, then the rows, one commit
                with uow:
                    if not self.leading and orders and self._open_epoch(uow.c) != market.epoch:
                        # read first (on PostgreSQL held to the commit): the checks ran
                        # against the epoch the rows go into, or nothing is placed
                        raise OrderRejected("epoch_moved", "the epoch closed; place it again")
                    refused = exchange.escrow_many(orders, uow, fresh=True) if orders else []
                    for p, error in zip(placed, refused, strict=True):
                        if error is None:
                            escrowed.append(p)
                        else:
                            p.error = error
                    if not escrowed:
                        return
                    uow.hold()  # the audit log's lock from here to the commit, not over ledger I/O
                    while escrowed:  # again without the orders whose own write failed
                        entered = []
                        # only a request's own write can fail one order alone (_WriteFailed)
                        recorded = any(p.record is not None for p in escrowed)
                        savepoint = uow.c.begin_nested() if recorded else None
                        try:
                            if self.leading:
                                epoch = market.epoch
                                kept = []
                                results = exchange.enter_many(
                                    [p.order for p in escrowed if p.order]
                                )
                                for p, r in zip(escrowed, results, strict=True):
                                    if isinstance(r, Entered):
                                        kept.append(p)
                                        entered.append(r)  # as it goes: a failure reloads the book
                                    else:  # refused after a breaker trip: its escrow refunded below
                                        p.error = r
                                        turned.append(p.order.id if p.order else "")
                                escrowed = kept
                            else:
                                epoch = self._open_epoch(uow.c)
                                entered = [Entered(p.order, [], 0) for p in escrowed if p.order]
                            if escrowed:
                                self._write_orders(uow.c, exchange, escrowed, entered, epoch)
                        except _WriteFailed as failed:
                            assert savepoint is not None
                            savepoint.rollback()
                            turned += [f.order.id for f in failed.placements if f.order]
                            if self.leading:  # the book took orders whose rows rolled back
                                self._reload_book()
                                market, exchange = self.market, self.exchange
                            escrowed = [p for p in escrowed if p.error is None]
                            for p in escrowed:  # the same order (its escrow), not yet entered
                                o = p.order
                                assert o is not None
                                p.order = Order(
                                    o.id, o.owner, o.side, o.quantity_wh, o.price, o.zone, o.tif
                                )
                            continue
                        if savepoint is not None:
                            savepoint.commit()
                        break
                    for p, e in zip(escrowed, entered, strict=True):
                        assert p.row is not None
                        uow.emit(Event("order", p.row, p.user_id))
                        for t in e.trades:
                            uow.emit(
                                Event(
                                    "trade", {"epoch": epoch, "wh": t.quantity_wh, "price": t.price}
                                )
                            )
                    if self.leading:
                        uow.emit(Event("book", {"epoch": epoch}))
            except BaseException as err:
                for p in batch:  # nothing of this batch was committed
                    if p.error is None:
                        p.error, p.row = err, None
                if entered:  # the book took orders whose rows were not written
                    self._reload_book()
                try:  # the batch's escrow back at once, not at the epoch's close
                    self._sweep(epoch)
                except Exception:
                    log.exception("sweep after a failed batch failed")
                if not isinstance(err, Exception):
                    raise
                return
            if turned:  # their escrow back at once, not at the epoch's close
                try:
                    exchange.sweep_intents(epoch, only=turned)
                except Exception:  # the epoch's close sweeps them again
                    log.exception("refund of %d refused orders' escrow failed", len(turned))
            # the events, once committed
            for event in uow.events:
                self.publish(event)

    def _admit(self, batch: list[Placement], epoch: int) -> list[Placement]:
        """The placements that pass the account's approval, the rate limit and the order's
        own form (each refused one gets its error), with their new orders."""
        owners = [p.user_id for p in batch]
        families = [p.family for p in batch if p.family is not None]
        placed_now = (
            select(func.count())
            .where(market_orders.c.user_id == users.c.user_id, market_orders.c.epoch == epoch)
            .scalar_subquery()
        )
        with self.engine.connect() as c:  # one statement for the accounts, one for logins
            found = c.execute(
                select(users.c.user_id, users.c.status, placed_now).where(
                    users.c.user_id.in_(owners)
                )
            ).all()
            revoked = (
                set(
                    c.execute(
                        select(revoked_logins.c.family).where(revoked_logins.c.family.in_(families))
                    ).scalars()
                )
                if families
                else set()
            )
        # pending: not yet approved; suspended: by an operator
        refused = {r[0]: r[1] for r in found if r[1] in ("pending", "suspended")}
        placed: dict[str, int] = {r[0]: r[2] for r in found}
        for p in batch:  # a caller whose token was only decoded (`Accounts.decode`)
            if p.family is not None and p.family in revoked:
                p.error = AuthUnauthorized("login_revoked", "this login ended: sign in again")
        admitted = []
        for p in batch:
            if p.error is not None:
                continue
            try:
                if refused.get(p.user_id) == "pending":
                    raise OrderRejected(
                        "not_approved", "this account waits for an operator's approval"
                    )
                if refused.get(p.user_id) == "suspended":
                    raise OrderRejected("suspended", "this account is suspended")
                if placed.get(p.user_id, 0) >= MAX_ORDERS_PER_EPOCH:
                    raise OrderRejected(
                        "order_rate_limited", f"{MAX_ORDERS_PER_EPOCH} orders per epoch"
                    )
                p.order = new_order(p.user_id, p.side, p.quantity_wh, p.price, p.zone, p.tif)
            except OrderRejected as err:
                p.error = err
                continue
            admitted.append(p)
        return admitted

    def _owners_market(self, owners: list[str]) -> Market:
        """A scratch market holding these owners' live orders in the open epoch, to check
        their new orders against (an instance that is not the sequencer has no book)."""
        epoch = self.market.epoch
        own = Market(self.config, epoch=epoch)
        own.halted = self.market.halted
        with self.engine.connect() as c:
            for r in c.execute(
                select(market_orders).where(
                    market_orders.c.user_id.in_(owners),
                    market_orders.c.epoch == epoch,
                    market_orders.c.status.in_(LIVE),
                )
            ).all():
                own.place(order_of(r))
        return own

    def _write_orders(
        self,
        c: Connection,
        exchange: Exchange,
        placed: list[Placement],
        entered: list[Entered],
        epoch: int,
    ) -> None:
        """The tail of every placement, on the sequencer or not: the order rows (as the
        book left them after the whole batch; seq 0 where no book took them), the intents
        opened with the executions and fills, each Idempotency-Key's response and the audit
        entries, all in `c`."""
        now = int(self.clock())
        rows = []
        for p, e in zip(placed, entered, strict=True):
            order = e.order
            p.row = {
                "order_id": order.id,
                "user_id": p.user_id,
                "epoch": epoch,
                "seq": order.seq if self.leading else 0,
                "side": order.side.value,
                "quantity_wh": order.quantity_wh,
                "price": order.price,
                "zone": order.zone,
                "tif": order.tif.value,
                "status": order.status.value if self.leading else "open",
                "filled_wh": order.filled_wh if self.leading else 0,
                "created_at": now,
            }
            rows.append(p.row)
        c.execute(insert(market_orders), rows)
        exchange.persist_many(c, entered)
        failed = []
        for p in placed:  # one request's error fails that order alone, with its own error
            if p.record is not None and p.row is not None:
                try:
                    with c.begin_nested():
                        p.record(c, p.row)
                except Exception as err:
                    p.error, p.row = err, None
                    failed.append(p)
        if failed:
            raise _WriteFailed(failed)
        auditlog.append_many(
            c,
            [
                (
                    p.user_id,
                    "order.place",
                    {
                        "order_id": r["order_id"],
                        "side": p.side,
                        "wh": p.quantity_wh,
                        "price": p.price,
                    },
                )
                for p, r in zip(placed, rows, strict=True)
            ],
        )

    def _reload_book(self) -> None:
        """The open epoch's book again from the database (a batch's transaction failed after
        the book took its orders); their escrow intents stay pending for the sweep."""
        old = self.market
        self.market = Market(self.config, epoch=old.epoch)
        self.exchange = self._exchange(self.market)
        self._load(self.market, self.exchange, self.market.epoch)
        # a halt and the breakers' windows are the market's, not the book's: they stay
        self.market.halted = old.halted
        self.market._band, self.market._reference = old._band, old._reference

    def _sequence(
        self, market: Market, exchange: Exchange, epoch: int, loading: bool = False
    ) -> None:
        """Enter the orders other instances placed into this epoch (seq 0), in the order
        they were placed, and apply the cancels they asked for (`cancelling`). Their rows
        are written in one transaction; if it fails, the live book is read again (unless
        it is being read now, `loading`: its reader fails instead)."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(market_orders)
                .where(
                    market_orders.c.epoch == epoch,
                    market_orders.c.seq == 0,
                    market_orders.c.status.in_(LIVE),
                )
                .order_by(market_orders.c.created_at, market_orders.c.order_id)
            ).all()
        orders = [order_of(r) for r in rows]
        entered: list[Entered] = []
        for order, result in zip(orders, exchange.enter_many(orders), strict=True):
            if isinstance(result, Entered):
                entered.append(result)
            else:  # a halt the other instance did not see: no place
                log.info("order %s from another instance refused: %s", order.id, result.code)
                exchange.withdraw(order.id, order.owner)  # its escrow back
                with self.engine.begin() as c:
                    c.execute(
                        update(market_orders)
                        .where(market_orders.c.order_id == order.id)
                        .values(status="cancelled")
                    )
        if entered:  # one transaction for all of them, as the book left them
            try:
                with self.engine.begin() as c:
                    c.execute(
                        update(market_orders)
                        .where(market_orders.c.order_id == bindparam("entered_id"))
                        .values(
                            seq=bindparam("entered_seq"),
                            status=bindparam("entered_status"),
                            filled_wh=bindparam("entered_filled"),
                        ),
                        [
                            {
                                "entered_id": e.order.id,
                                "entered_seq": e.order.seq,
                                "entered_status": e.order.status.value,
                                "entered_filled": e.order.filled_wh,
                            }
                            for e in entered
                        ],
                    )
                    exchange.persist_many(c, entered)
            except Exception:
                if market is self.market and not loading:  # orders whose rows were not written
                    self._reload_book()
                raise
            for e in entered:
                for t in e.trades:
                    self.publish(
                        Event("trade", {"epoch": epoch, "wh": t.quantity_wh, "price": t.price})
                    )
        if rows:
            self.publish(Event("book", {"epoch": epoch}))
        with self.engine.connect() as c:
            asked = c.execute(
                select(market_orders.c.order_id, market_orders.c.user_id).where(
                    market_orders.c.epoch == epoch, market_orders.c.status == CANCELLING
                )
            ).all()
        for r in asked:
            filled = exchange.withdraw(r.order_id, r.user_id)
            values: dict[str, Any] = {"status": "cancelled"}
            if filled is not None:
                values["filled_wh"] = filled
            with self.engine.begin() as c:
                c.execute(
                    update(market_orders)
                    .where(market_orders.c.order_id == r.order_id)
                    .values(**values)
                )
            self.publish(Event("book", {"epoch": epoch}))

    def _cancel_here(self, user_id: str, order_id: str) -> dict[str, Any]:
        """A cancel on an instance that is not the sequencer: the order is marked
        `cancelling` if it is live in the open epoch (under the epoch's shared lock, so the
        sequencer's close sees the mark), and the sequencer takes it out of the book and
        refunds the rest of its escrow (`_sequence`) within a tick."""
        with self.lock:
            with self.engine.begin() as c:
                epoch = self._open_epoch(c)
                done = c.execute(
                    update(market_orders)
                    .where(
                        market_orders.c.order_id == order_id,
                        market_orders.c.user_id == user_id,
                        market_orders.c.epoch == epoch,
                        market_orders.c.status.in_(LIVE),
                    )
                    .values(status=CANCELLING)
                )
            if done.rowcount == 0:
                row = self.order_row(order_id)
                if row is None or row["user_id"] != user_id:
                    raise OrderRejected("unknown_order", f"no order {order_id!r} of yours")
                raise OrderRejected("order_not_open", f"order {order_id!r} is {row['status']}")
            auditlog.append(self.engine, user_id, "order.cancel", {"order_id": order_id})
            return self.order_row(order_id) or {}

    def cancel(self, user_id: str, order_id: str) -> dict[str, Any]:
        if not self.leading:
            return self._cancel_here(user_id, order_id)
        with self.lock:
            row = self.order_row(order_id)
            if row is None or row["user_id"] != user_id:
                raise OrderRejected("unknown_order", f"no order {order_id!r} of yours")
            if self.shared:  # placed on another instance and not yet in the book
                self._sequence(self.market, self.exchange, self.market.epoch)
            order = self.exchange.cancel(order_id, user_id)
            with self.engine.begin() as c:
                c.execute(
                    update(market_orders)
                    .where(market_orders.c.order_id == order_id)
                    .values(status=order.status.value, filled_wh=order.filled_wh)
                )
            auditlog.append(self.engine, user_id, "order.cancel", {"order_id": order_id})
            self.publish(Event("book", {"epoch": self.market.epoch}))
            return self.order_row(order_id) or {}

    def order_row(self, order_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(
                select(market_orders).where(market_orders.c.order_id == order_id)
            ).first()
        return None if row is None else dict(row._mapping)

    def in_open_epoch(self, user_id: str) -> int:
        """How many orders the user placed in the market's epoch (at most
        MAX_ORDERS_PER_EPOCH; one range of market_orders_user_epoch)."""
        o = market_orders
        query = select(func.count()).where(o.c.user_id == user_id, o.c.epoch == self.market.epoch)
        with self.engine.connect() as c:
            return int(c.execute(query).scalar_one())

    def orders_of(
        self, user_id: str, limit: int = 100, after: tuple[int, int, str] | None = None
    ) -> list[dict[str, Any]]:
        """A user's orders, newest first by (epoch, seq, order_id): the order id breaks ties
        between orders still waiting with seq 0, so a page that ends at `after` (that key of
        its last row) is followed by the next one with no row skipped or repeated."""
        o = market_orders
        key = (o.c.epoch, o.c.seq, o.c.order_id)
        query = select(o).where(o.c.user_id == user_id)
        if after is not None:
            query = query.where(tuple_(*key) < tuple_(*after))
        with self.engine.connect() as c:
            rows = c.execute(query.order_by(*(k.desc() for k in key)).limit(limit))
            return [dict(r._mapping) for r in rows]
