"""The market as a service: orders placed with escrow, epochs cleared and settled on a
clock, everything persisted so a restart resumes exactly.

Epoch n covers [n * epoch_s, (n + 1) * epoch_s) of the clock. The pipeline of an epoch is
close -> clear -> settle -> publish, and each step is idempotent: the trades go to the books
keyed by epoch, settlement parts are found on the chain by their memos, and the epoch row
is written last. After a crash, `recover` clears and settles any past epoch left unsettled
(clearing is deterministic: the same orders give the same trades), gives back the escrow
of any order the crash left half-placed, and rebuilds the current epoch's book from the
database. Under CDA each execution is written with the order that made it, so a crash
loses no match.

A batch's placement (`_flush`) and an epoch's close (`close_epoch`, `recover`) read top to
bottom: validate, then one unit of work (`services/uow.py`: the database transaction and
the ledger batch), then the events, published once committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Connection, bindparam, exists, func, insert, select, tuple_, update
from sqlalchemy import text as sql

from gridtokenx import auditlog
from gridtokenx.accounts import AuthUnauthorized
from gridtokenx.adapters import books, idempotency
from gridtokenx.adapters.auth_tables import revoked_logins
from gridtokenx.adapters.events import Event
from gridtokenx.adapters.tables import epochs, market_executions, market_orders, settings, users
from gridtokenx.errors import Unavailable
from gridtokenx.keynames import key_user, user_key
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.market.config import MarketConfig
from gridtokenx.market.engine import EpochOutcome, Market
from gridtokenx.market.errors import EpochMoved, OrderRejected
from gridtokenx.market.orders import Order, OrderStatus, Side, TimeInForce
from gridtokenx.services import suspension
from gridtokenx.services.exchange import Entered, Exchange
from gridtokenx.services.site import Platform
from gridtokenx.services.uow import UnitOfWork

log = logging.getLogger(__name__)
MAX_ORDERS_PER_EPOCH = 50
LIVE = ("open", "partially_filled")
CANCELLING = "cancelling"  # asked on an instance that is not the sequencer, not yet applied
OPEN_EPOCH = "open_epoch"  # settings row: the epoch orders go into, moved by the sequencer
EPOCH_LOCK = 0x47545831_00000002  # PostgreSQL advisory lock: placements shared, close exclusive
STALE_CLAIM_S = 60  # no request runs longer: an older pending claim was cut short
STALE_INTENT_MS = 30_000  # an escrow intent older than this is not being placed any more


class _WriteFailed(Exception):
    """Some placements of a batch failed their own writes (each has its error)."""

    def __init__(self, placements: list[_Placement]) -> None:
        super().__init__(f"{len(placements)} placements failed")
        self.placements = placements


class Wallets(Mapping[str, st.Holder]):
    """Wallets by user id: custodial ones from the keystore (`user/<id>`); a self-custody
    one (its key is the household's) as the platform's delegate within the allowance the
    household approved on the chain (`st.Delegated`). Iterating lists the custodial ones."""

    def __init__(self, keystore: Keystore, engine: Any = None) -> None:
        self.keystore, self.engine = keystore, engine
        self._delegate: Keypair | None = None

    @property
    def delegate(self) -> Keypair:
        """The platform's delegate key (made once, `keystore.ensure`), kept: every custodial
        escrow after a wallet's first is signed by it."""
        if self._delegate is None:
            self._delegate = self.keystore.ensure("delegate")
        return self._delegate

    def __getitem__(self, user_id: str) -> st.Holder:
        name = user_key(user_id)
        if name in self.keystore:
            return self.keystore.get(name)
        if self.engine is not None:
            with self.engine.connect() as c:
                row = c.execute(
                    select(users.c.wallet).where(
                        users.c.user_id == user_id, users.c.custodial.is_(False)
                    )
                ).first()
            if row is not None:
                return st.Delegated(Pubkey.from_string(row.wallet), self.delegate)
        raise KeyError(user_id)

    def __iter__(self) -> Iterator[str]:
        names = self.keystore.names()
        return (u for u in map(key_user, names) if u is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def order_id() -> str:
    """A new order's id: milliseconds, then 32 random bits, so that ids grow with time and
    each new row lands at the end of the id indexes instead of on a random page of them."""
    return f"o-{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


def _new_order(user_id: str, side: str, quantity_wh: int, price: int, zone: str, tif: str) -> Order:
    try:
        return Order(
            order_id(), user_id, Side(side), quantity_wh, price, zone, TimeInForce(tif.lower())
        )
    except ValueError as err:
        raise OrderRejected("invalid_order", str(err)) from None


def _order_of(r: Any) -> Order:
    """An order as its row has it (what it has filled, its status)."""
    return Order(
        r.order_id,
        r.user_id,
        Side(r.side),
        r.quantity_wh,
        r.price,
        r.zone,
        TimeInForce(r.tif),
        filled_wh=r.filled_wh,
        status=OrderStatus(r.status),
    )


MAX_BATCH = 256  # placements in one group commit


def _halt_of(saved: str | None) -> str | None:
    """An operator's halt reason as stored in `settings` (None: not halted)."""
    return None if saved is None else str(json.loads(saved))


def _epoch_of(saved: str | None) -> int | None:
    """The open epoch as stored in `settings` (None: none stored yet)."""
    return None if saved is None else int(json.loads(saved))


@dataclass(eq=False)
class _Placement:
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


class Trading:
    def __init__(
        self,
        platform: Platform,
        config: MarketConfig | None = None,
        epoch_s: float = 900.0,
        clock: Callable[[], float] = time.time,
        grid: Any = None,
        sequencer: bool = True,
    ) -> None:
        """`sequencer`: this instance runs the market (matching, the epoch clock, clearing,
        settlement). False: it only takes requests until `lead` makes it the sequencer."""
        self.platform, self.engine = platform, platform.books
        self.leading = sequencer
        self.shared = self.engine.dialect.name != "sqlite"  # other instances may place
        self.grid = grid  # a GridView: trades are checked against the feeder before settling
        self.config = config or MarketConfig()
        self.epoch_s, self.clock = epoch_s, clock
        self.lock = platform.lock
        self.wallets = Wallets(platform.keys, platform.books)
        saved = self._settings("market", "halt")
        self._apply_parameters(saved.get("market"))
        halted = _halt_of(saved.get("halt"))
        # a halted market stays on the epoch its live orders are in, until the resume
        epoch = self.current_epoch() if halted is None else self._oldest_live_epoch()
        self.market = Market(self.config, epoch=epoch)
        self.exchange = self._exchange(self.market)
        self.listeners: list[Callable[[Event], None]] = []
        self.publish_failures = 0  # listener calls that raised (`publish`)
        self._queue: deque[_Placement] = deque()  # placements waiting for a group commit
        self._queued = threading.Condition()
        self._flushing = False  # a caller or the group-commit thread is placing a batch
        self._closed = False  # `close`: no placement is taken any more
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="group-commit")
        if sequencer:
            if self.shared:
                self._set_open_epoch(self.market.epoch)
            self.recover()
        if halted is not None:  # an operator's halt outlives a restart
            self.market.halt(halted)

    # -- which instance runs the market --------------------------------------------------------
    def _exchange(self, market: Market) -> Exchange:
        return Exchange(self.platform.dep, self.engine, market, self.wallets, self.wallets.delegate)

    def lead(self) -> None:
        """Become the sequencer (elected, see `adapters.election`): the open epoch moves to
        the clock's (so no instance places into an epoch being recovered), then every past
        epoch is cleared and settled and the open one's book rebuilt from the database."""
        with self.lock:
            saved = self._settings("market", "halt", OPEN_EPOCH)
            self._apply_parameters(saved.get("market"))
            halted = _halt_of(saved.get("halt"))
            if halted is None:
                epoch = max(self.current_epoch(), _epoch_of(saved.get(OPEN_EPOCH)) or 0)
            else:
                epoch = self._oldest_live_epoch()
            self.market = Market(self.config, epoch=epoch)
            self.exchange = self._exchange(self.market)
            if self.shared:
                self._set_open_epoch(epoch)
            self.recover()
            if halted is not None:
                self.market.halt(halted)
            self.leading = True

    def step_down(self) -> None:
        """No longer the sequencer (the election's connection was lost)."""
        with self.lock:
            self.leading = False

    def follow(self) -> None:
        """What an instance that is not the sequencer shows: the open epoch, the halt and
        the parameters, as the sequencer and the operators left them in the database."""
        if self.leading:
            return
        saved = self._settings("market", "halt", OPEN_EPOCH)  # one read before each batch
        self._apply_parameters(saved.get("market"))
        self.market.config = self.config
        self.market.halted = _halt_of(saved.get("halt"))
        open_epoch = _epoch_of(saved.get(OPEN_EPOCH))
        self.market.epoch = self.current_epoch() if open_epoch is None else open_epoch

    def _settings(self, *names: str) -> dict[str, str]:
        """These settings' stored values in one query (one not stored is left out)."""
        with self.engine.connect() as c:
            query = select(settings.c.name, settings.c.value).where(settings.c.name.in_(names))
            return {str(name): str(value) for name, value in c.execute(query).all()}

    def _open_epoch(self, c: Connection) -> int:
        """The epoch an order placed in `c` belongs to. On PostgreSQL a shared advisory lock,
        held to the commit, keeps the sequencer from closing that epoch meanwhile."""
        if c.dialect.name == "postgresql":
            c.execute(sql("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": EPOCH_LOCK})
        row = c.execute(select(settings.c.value).where(settings.c.name == OPEN_EPOCH)).first()
        epoch = _epoch_of(None if row is None else row.value)
        return self.current_epoch() if epoch is None else epoch

    def _set_open_epoch(self, epoch: int) -> None:
        """Move the open epoch (the sequencer only): waits for the placements still writing
        into the old one, after which no instance can place into it."""
        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":
                c.execute(sql("SELECT pg_advisory_xact_lock(:k)"), {"k": EPOCH_LOCK})
            c.execute(settings.delete().where(settings.c.name == OPEN_EPOCH))
            c.execute(settings.insert().values(name=OPEN_EPOCH, value=json.dumps(epoch)))

    # -- the clock -------------------------------------------------------------------------
    def current_epoch(self) -> int:
        return int(self.clock() // self.epoch_s)

    def ends_at(self, epoch: int) -> float:
        return (epoch + 1) * self.epoch_s

    def publish(self, event: Event) -> None:
        """Each listener told in turn; one that fails (a relay down) is logged and counted
        (`publish_failures`) and never fails what was committed, nor the other listeners."""
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                self.publish_failures += 1
                log.exception("an event listener failed on %s", event.kind)

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
        waiting = _Placement(user_id, side, quantity_wh, price, zone, tif, record, family)
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
        waiting = _Placement(user_id, side, quantity_wh, price, zone, tif, None, family)
        with self._queued:
            self._take_in(waiting)
            start = not self._flushing
            self._flushing = True
        if start:
            self._committer.submit(self._drain)
        return waiting.future

    def _take_in(self, waiting: _Placement) -> None:
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

    def _flush_batch(self, batch: list[_Placement]) -> None:
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

    def _take(self) -> list[_Placement]:
        """The next batch from the queue, oldest first, at most one order of an owner (each
        is checked against the book with the owner's earlier orders in it)."""
        batch: list[_Placement] = []
        owners: set[str] = set()
        rest: deque[_Placement] = deque()
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

    def _flush(self, batch: list[_Placement]) -> None:
        """Place a batch: each order checked on its own (approval, the rate limit, the
        book's rules, funds), the rest escrowed together and written in one transaction.
        The sequencer enters them into the book; another instance writes them with seq 0
        into the open epoch, for the sequencer to enter (`_sequence`), in the order placed."""
        escrowed: list[_Placement] = []
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

    def _admit(self, batch: list[_Placement], epoch: int) -> list[_Placement]:
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
                p.order = _new_order(p.user_id, p.side, p.quantity_wh, p.price, p.zone, p.tif)
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
                own.place(_order_of(r))
        return own

    def _write_orders(
        self,
        c: Connection,
        exchange: Exchange,
        placed: list[_Placement],
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
        orders = [_order_of(r) for r in rows]
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
        suspension.cancel_suspended(self)  # never clear against a frozen account
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
            market.place(_order_of(r))
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
                    select(books.orders).where(
                        books.orders.c.status == "open",
                        ~exists().where(market_orders.c.order_id == books.orders.c.order_id),
                    )
                ).all()
                paid = books.released_of(c, [row.order_id for row in orphans])
            for row in orphans:
                left = int(row.escrowed) - paid.get(row.order_id, 0)
                with self.engine.begin() as c:
                    if left > 0:
                        c.execute(
                            books.refunds.insert().values(
                                order_id=row.order_id,
                                epoch=self.market.epoch,
                                kind="cancel",
                                owner=row.owner,
                                asset=row.asset,
                                amount=left,
                            )
                        )
                    c.execute(
                        books.orders.update()
                        .where(books.orders.c.order_id == row.order_id)
                        .values(status="closed")
                    )
                if left > 0:
                    st.refund(
                        self.platform.dep,
                        row.order_id,
                        Pubkey.from_string(row.owner),
                        row.asset,
                        left,
                    )

    # -- admin --------------------------------------------------------------------------------
    def set_parameters(self, actor: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change market parameters (fee, price bounds, order size) from now on; kept in
        the database, so a restart keeps them."""
        from dataclasses import replace as with_changes

        with self.lock:
            try:
                config = with_changes(self.config, **changes)
            except ValueError as err:
                raise OrderRejected("bad_parameters", str(err)) from None
            self.config = self.market.config = config
            self._save_parameters()
            auditlog.append(self.engine, actor, "market.parameters", changes)
            return self.parameters()

    def parameters(self) -> dict[str, Any]:
        c = self.config
        return {
            "mechanism": c.mechanism.value,
            "fee_bps": c.fee_bps,
            "min_price": c.min_price,
            "max_price": c.max_price,
            "max_quantity_wh": c.max_quantity_wh,
        }

    def _save_parameters(self) -> None:

        value = json.dumps({k: v for k, v in self.parameters().items() if k != "mechanism"})
        with self.engine.begin() as c:
            c.execute(settings.delete().where(settings.c.name == "market"))
            c.execute(settings.insert().values(name="market", value=value))

    def _oldest_live_epoch(self) -> int:
        with self.engine.connect() as c:
            oldest = c.execute(
                select(func.min(market_orders.c.epoch)).where(market_orders.c.status.in_(LIVE))
            ).scalar()
        return self.current_epoch() if oldest is None else int(oldest)

    def _apply_parameters(self, saved: str | None) -> None:
        """The operators' market parameters, as stored in `settings` (None: none saved)."""
        from dataclasses import replace as with_changes

        if saved is not None:
            self.config = with_changes(self.config, **json.loads(saved))

    def halt(self, actor: str, reason: str) -> None:
        """An operator's halt, kept in the database: a restart does not resume trading."""
        with self.lock:
            self.market.halt(reason)
            with self.engine.begin() as c:
                c.execute(settings.delete().where(settings.c.name == "halt"))
                c.execute(settings.insert().values(name="halt", value=json.dumps(reason)))
            auditlog.append(self.engine, actor, "market.halt", {"reason": reason})
            self.publish(Event("epoch", {"epoch": self.market.epoch, "halted": reason}))

    def resume(self, actor: str) -> None:
        with self.lock:
            self.market.resume()
            with self.engine.begin() as c:
                c.execute(settings.delete().where(settings.c.name == "halt"))
            auditlog.append(self.engine, actor, "market.resume", {})
            self.publish(Event("epoch", {"epoch": self.market.epoch, "halted": None}))

    def user_status(self, user_id: str) -> str | None:
        with self.engine.connect() as c:
            row = c.execute(select(users.c.status).where(users.c.user_id == user_id)).first()
        return None if row is None else str(row.status)
