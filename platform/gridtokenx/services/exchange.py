"""The market with money behind it: escrow on placing, settlement on the chain at clearing.

Order of writes, so that a crash anywhere loses nothing and pays nothing twice:
- place (`escrow_many`, a batch of orders at once): commit the escrow intents (`pending`
  rows), lock the escrows on the chain (packed, each idempotent by its memo), then the book
  and the order rows with the intents opened in one transaction; `sweep_intents` settles
  intents a crash left behind. Under CDA the order's
  executions and its counterparties' fills are written in the order row's transaction
  (`persist`), so a match survives a crash; at a restart `load` reads them back and the
  resting book is rebuilt from the live orders' remainders.
- clear: the epoch's trades and refunds go to the books in one transaction (their keys make
  a retry a no-op), then `settle_epoch`, which skips every part already on the chain.

Every query selects by key or by an indexed epoch: no step reads the whole history.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Connection, Engine, Row, insert, select, update

from gridtokenx import crashpoints
from gridtokenx.adapters import books
from gridtokenx.adapters.tables import market_executions, market_orders
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.backend import LedgerError, public_key
from gridtokenx.ledger.deployment import Deployment
from gridtokenx.ledger.tokens import granted_to
from gridtokenx.market.config import Mechanism
from gridtokenx.market.engine import EpochOutcome, Market
from gridtokenx.market.errors import OrderRejected
from gridtokenx.market.orders import Order
from gridtokenx.market.trades import Trade
from gridtokenx.services.uow import UnitOfWork
from gridtokenx.units import WH_PER_KWH

PENDING = "pending"  # an escrow intent: committed before the transfer, see `place`


class Entered(NamedTuple):
    """An order entered into the book: the executions it made, the first one's index among
    the epoch's."""

    order: Order
    trades: list[Trade]
    first: int


def max_cost(order: Order) -> int:
    """A buy order's escrow: the most it can pay, wheeling included (floors never exceed it)."""
    return order.quantity_wh * order.price // WH_PER_KWH


def _vwap(trades: list[Trade]) -> int | None:
    volume = sum(t.quantity_wh for t in trades)
    return None if volume == 0 else sum(t.quantity_wh * t.price for t in trades) // volume


class Exchange:
    def __init__(
        self,
        dep: Deployment,
        engine: Engine,
        market: Market,
        wallets: Mapping[str, st.Holder],
        delegate: Keypair | None = None,
    ) -> None:
        """`delegate`: the platform's delegate key, which signs a custodial wallet's escrow
        once the wallet granted it (`st.custodial_escrow`); None: each wallet signs its own."""
        self.dep, self.engine, self.market, self.wallets = dep, engine, market, wallets
        self.delegate = delegate
        self._trades: list[Trade] = []  # this epoch's CDA executions, persisted as they happen

    def wallet(self, owner: str) -> st.Holder:
        key = self.wallets.get(owner)
        if key is None:
            raise OrderRejected("no_wallet", f"{owner} has no wallet")
        return key

    def place(self, order: Order, uow: UnitOfWork | None = None) -> list[Trade]:
        """Escrow the order on the chain and enter it in the book (`escrow_many` of one).
        `uow` is the caller's unit of work that writes the order row: the intent becomes
        `open` in it (`persist`), so an open escrow row always has its order row. Without
        `uow` the intent is opened at once (the order has no other row)."""
        if uow is None:
            with UnitOfWork(self.engine, self.dep) as own:
                trades = self.place(order, own)
                _open(own.c, order.id)
                return trades
        refused = self.escrow_many([order], uow)[0]
        if refused is not None:
            raise refused
        return self.enter(order)

    def escrow_many(
        self, orders: Sequence[Order], uow: UnitOfWork, fresh: bool = False
    ) -> list[OrderRejected | None]:
        """Escrow several orders on the chain at once (a group commit): each is checked
        (the book's rules, its wallet, funds, a self-custody allowance), the intents of
        those that pass are committed in one transaction (`pending` rows), then all their
        transfers go to the ledger packed (`uow.lock`). A crash at any instant leaves
        either nothing on the chain or pending rows that the audit counts as held when
        their transfer landed and `sweep_intents` settles. `uow` is the caller's unit of
        work whose transaction will write the order rows and open the intents (`persist`); on
        PostgreSQL the intents are locked in it first, so a sweep on another instance
        cannot take them meanwhile. The orders are not entered in the book here.

        At most one order of an owner per call: each is checked against the book as it is
        (the caller enters them afterwards). Returns each order's refusal, or None: a bad
        order fails alone with its own code and never fails the others. `fresh`: the orders
        were made just now (new ids), so none can have an intent from an earlier try: their
        intents are not looked up first."""
        c = uow.c
        out: list[OrderRejected | None] = [None] * len(orders)
        escrows: dict[int, st.Escrow] = {}
        checked: dict[int, st.Escrow] = {}
        for k, order in enumerate(orders):
            try:
                checked[k] = self._check(order)
            except OrderRejected as err:
                out[k] = err
        with self.engine.begin() as conn:  # the intents, committed before any transfer
            known = (
                set()
                if fresh or not checked
                else set(
                    conn.execute(
                        select(books.orders.c.order_id).where(
                            books.orders.c.order_id.in_([e.order_id for e in checked.values()])
                        )
                    ).scalars()
                )
            )
            # escrowed before (a retry): not again
            escrows = {k: e for k, e in checked.items() if e.order_id not in known}
            if escrows:
                conn.execute(
                    insert(books.orders),
                    [
                        {
                            "order_id": e.order_id,
                            "owner": str(e.owner),
                            "asset": e.asset,
                            "escrowed": e.amount,
                            "status": PENDING,
                        }
                        for e in escrows.values()
                    ],
                )
        if escrows:
            crashpoints.reached("order.intent")
        if c.dialect.name == "postgresql" and escrows:
            held = set(
                c.execute(
                    select(books.orders.c.order_id)
                    .where(
                        books.orders.c.order_id.in_([e.order_id for e in escrows.values()]),
                        books.orders.c.status == PENDING,
                    )
                    .with_for_update()
                ).scalars()
            )
            for k in [k for k, e in escrows.items() if e.order_id not in held]:
                out[k] = OrderRejected(
                    "order_interrupted", "the order was cut short; place it again"
                )
                del escrows[k]
        landed = uow.lock(list(escrows.values()))
        for k, result in zip(list(escrows), landed, strict=True):
            if isinstance(result, LedgerError):
                out[k] = OrderRejected(result.code, f"the ledger refused the escrow: {result.code}")
        if escrows:
            crashpoints.reached("order.escrowed")
        return out

    def _check(self, order: Order) -> st.Escrow:
        """The order's escrow if it may be placed now, else its refusal (OrderRejected)."""
        self.market.validate(order)
        key = self.wallet(order.owner)
        asset, amount = ("thb", max_cost(order)) if order.is_buy else ("grx", order.quantity_wh)
        if amount <= 0:  # e.g. 1 Wh at 1 uTHB/kWh: nothing to escrow, nothing it could pay
            raise OrderRejected("order_too_small", "the order's value rounds to 0 uTHB")
        owner = st.owner_key(key)
        have, grant = (self.dep.thb if asset == "thb" else self.dep.grx).holding(owner)
        if have < amount:
            raise OrderRejected("insufficient_funds", f"{asset} {have} < {amount} needed")
        if isinstance(key, st.Delegated):  # a self-custody wallet: within its grant
            left = granted_to(grant, public_key(key.delegate))
            if left < amount:
                raise OrderRejected(
                    "insufficient_allowance", f"{asset} allowance {left} < {amount}: approve more"
                )
        elif self.delegate is not None:  # custodial: the delegate signs once it may
            return st.custodial_escrow(key, self.delegate, grant, order.id, asset, amount)
        return st.Escrow(key, order.id, asset, amount, owner)

    def sweep_intents(
        self, epoch: int, older_than_ms: int | None = None, only: Collection[str] | None = None
    ) -> int:
        """Settle escrow intents a crash cut short: an intent whose transfer landed is
        refunded (a `cancel` refund row, the order closed), one whose transfer never landed
        is deleted. The chain refund is sent before the commit, with the row locked, so a
        crash between them leaves the intent pending and the next sweep records the refund
        it finds on the chain. `older_than_ms`: only intents whose id is older (instances
        placing right now hold theirs locked on PostgreSQL; SQLite has one process).
        `only`: just these orders' intents (a batch's refused or failed orders, at once)."""
        swept = 0
        index = self.dep.ledger.memo_index()
        with self.engine.begin() as c:
            query = select(books.orders).where(books.PENDING_INTENT)
            if only is not None:
                query = query.where(books.orders.c.order_id.in_(sorted(only)))
            if c.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for row in c.execute(query).all():
                if older_than_ms is not None and _id_ms(str(row.order_id)) >= older_than_ms:
                    continue
                swept += 1
                escrow = f"{st.ESCROW} {row.order_id} {row.asset} {row.escrowed}"
                if escrow not in index:
                    c.execute(books.orders.delete().where(books.orders.c.order_id == row.order_id))
                    continue
                st.refund(self.dep, row.order_id, _pk(row.owner), row.asset, int(row.escrowed))
                c.execute(
                    books.refunds.insert().values(
                        order_id=row.order_id,
                        epoch=epoch,
                        kind="cancel",
                        owner=row.owner,
                        asset=row.asset,
                        amount=row.escrowed,
                    )
                )
                c.execute(
                    books.orders.update()
                    .where(books.orders.c.order_id == row.order_id)
                    .values(status="closed")
                )
        return swept

    def persist(self, c: Connection, order: Order, trades: list[Trade]) -> None:
        """Write a CDA order's executions and its counterparties' fills (in the transaction
        that writes the order's own row), its escrow intent opened."""
        self.persist_many(c, [Entered(order, trades, len(self._trades) - len(trades))])

    def persist_many(self, c: Connection, entered: Sequence[Entered]) -> None:
        """`persist` for several orders entered one after the other (`enter_many`): their
        intents opened in one statement, their executions in one, then the fills of their
        counterparties."""
        for chunk in books.in_chunks([e.order.id for e in entered]):
            c.execute(
                update(books.orders)
                .where(
                    books.orders.c.order_id.in_(chunk),
                    books.orders.c.status == PENDING,
                )
                .values(status="open")
            )
        executions = [
            {"epoch": self.market.epoch, "idx": e.first + k, **t._asdict()}
            for e in entered
            for k, t in enumerate(e.trades)
        ]
        if executions:
            c.execute(insert(market_executions), executions)
        for e in entered:
            for t in e.trades:
                other = self.market.order(t.sell_id if e.order.is_buy else t.buy_id)
                if other is not None:
                    c.execute(  # a cancel asked meanwhile stays asked (applied after this)
                        update(market_orders)
                        .where(
                            market_orders.c.order_id == other.id,
                            market_orders.c.status != "cancelling",
                        )
                        .values(status=other.status.value, filled_wh=other.filled_wh)
                    )

    def load(self, epoch: int) -> None:
        """This epoch's CDA executions as persisted (after a restart)."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(market_executions)
                .where(market_executions.c.epoch == epoch)
                .order_by(market_executions.c.idx)
            ).all()
        self._trades = [
            Trade(
                r.buy_id,
                r.sell_id,
                r.buyer,
                r.seller,
                r.buyer_zone,
                r.seller_zone,
                r.quantity_wh,
                r.price,
                r.wheeling_rate,
                r.fee_bps,
            )
            for r in rows
        ]

    def enter(self, order: Order) -> list[Trade]:
        """An order escrowed (here, or by another instance that wrote it), entered into the
        book."""
        trades = self.market.place(order)
        self._trades.extend(trades)
        return trades

    def enter_many(self, orders: Sequence[Order]) -> list[Entered | OrderRejected]:
        """Escrowed orders entered into the book in turn, each with what it executed, or
        the book's refusal (a breaker trip halts the market: the orders after it are
        refused `market_halted`, those before keep their fills)."""
        out: list[Entered | OrderRejected] = []
        for order in orders:
            first = len(self._trades)
            try:
                out.append(Entered(order, self.enter(order), first))
            except OrderRejected as err:
                out.append(err)
        return out

    def withdraw(self, order_id: str, owner: str) -> int | None:
        """A cancel another instance asked for: out of the book if it is live there, the
        rest of its escrow refunded. Returns what it filled, if the book knows."""
        order = self.market.order(order_id)
        if order is not None and order.is_live:
            self.market.cancel(order_id, owner)
        self.refund_all(self.market.epoch, {order_id}, kind="cancel", pending=self._trades)
        return None if order is None else order.filled_wh

    def cancel(self, order_id: str, owner: str) -> Order:
        order = self.market.cancel(order_id, owner)
        self.refund_all(self.market.epoch, {order_id}, kind="cancel", pending=self._trades)
        return order

    def clear(
        self,
        curtail: Callable[[list[Trade]], list[int]] | None = None,
        uow: UnitOfWork | None = None,
    ) -> tuple[EpochOutcome, list[str]]:
        """Clear the epoch, let `curtail` (the grid check) cut trades back, book the trades
        and refunds, settle them on the ledger through `uow` (the caller's unit of work,
        which records the epoch afterwards; without one, a unit of work of its own)."""
        if uow is None:
            with UnitOfWork(self.engine, self.dep) as own:
                return self.clear(curtail, own)
        epoch = self.market.epoch
        outcome = self.market.clear_epoch()
        if self.market.config.mechanism is Mechanism.CDA:  # the persisted executions
            outcome = replace(
                outcome, trades=list(self._trades), clearing_price=_vwap(self._trades)
            )
        if curtail is not None and outcome.trades:
            remaining = curtail(outcome.trades)
            cut = [
                t._replace(quantity_wh=q)
                for t, q in zip(outcome.trades, remaining, strict=True)
                if q > 0
            ]
            outcome = replace(outcome, trades=cut)
        trades = outcome.trades
        self._trades = []
        rows = []
        for k, t in enumerate(trades):
            r = t.receipt
            rows.append(
                {
                    "epoch": epoch,
                    "trade_id": f"{epoch}-{k}",
                    "buy_id": t.buy_id,
                    "sell_id": t.sell_id,
                    "buyer": str(self.wallet(t.buyer).pubkey()),
                    "seller": str(self.wallet(t.seller).pubkey()),
                    "wh": t.quantity_wh,
                    "buyer_paid": r.buyer_paid,
                    "seller_net": r.net_to_seller,
                    "fee": r.fee,
                    "wheeling": r.wheeling,
                    "price": t.price,
                    "wheeling_rate": t.wheeling_rate,
                    "fee_bps": t.fee_bps,
                }
            )
        with self.engine.connect() as c:
            done = c.execute(
                select(books.trades.c.trade_id).where(books.trades.c.epoch == epoch).limit(1)
            ).first()
            closing = set(outcome.closed_orders)
            if self.market.config.mechanism is Mechanism.CDA:  # also those filled before a restart
                closing |= set(
                    c.execute(
                        select(market_orders.c.order_id).where(market_orders.c.epoch == epoch)
                    ).scalars()
                )
        if done is None:
            books.add_rows(self.engine, books.trades, rows)
        self.refund_all(epoch, closing, kind="epoch", pending=[])
        with self.engine.connect() as c:
            booked = c.execute(
                select(books.trades)
                .where(books.trades.c.epoch == epoch)
                .order_by(books.trades.c.trade_id)
            ).all()
            refunded = c.execute(
                select(books.refunds)
                .where(books.refunds.c.epoch == epoch, books.refunds.c.kind == "epoch")
                .order_by(books.refunds.c.order_id)
            ).all()
        settle_trades = [
            st.Trade(
                str(r.trade_id),
                _pk(r.buyer),
                _pk(r.seller),
                int(r.wh),
                int(r.buyer_paid),
                int(r.seller_net),
                int(r.fee),
                int(r.wheeling),
            )
            for r in booked
        ]
        refunds = [
            st.Refund(str(r.order_id), _pk(r.owner), str(r.asset), int(r.amount)) for r in refunded
        ]
        signatures = uow.settle(epoch, settle_trades, refunds)
        return outcome, signatures

    def refund_all(
        self, epoch: int, order_ids: Collection[str], kind: str, pending: list[Trade]
    ) -> None:
        """Close these orders in the books with a refund row for what escrow still holds;
        `pending` are executions not yet in the books (CDA, before the epoch settles)."""
        refunds = []
        ids = sorted(order_ids)
        with self.engine.begin() as c:
            still_open: list[Row[Any]] = []
            for chunk in books.in_chunks(ids):
                still_open += c.execute(
                    select(books.orders).where(
                        books.orders.c.order_id.in_(chunk),
                        books.orders.c.status == "open",
                    )
                ).all()
            paid = books.released_of(c, [row.order_id for row in still_open])
            for t in pending:
                paid[t.buy_id] = paid.get(t.buy_id, 0) + t.receipt.buyer_paid
                paid[t.sell_id] = paid.get(t.sell_id, 0) + t.quantity_wh
            for row in sorted(still_open, key=lambda r: str(r.order_id)):
                left = row.escrowed - paid.get(row.order_id, 0)
                refunds.append((row, left))
                if left > 0:
                    c.execute(
                        books.refunds.insert().values(
                            order_id=row.order_id,
                            epoch=epoch,
                            kind=kind,
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
        if kind == "cancel":
            for row, left in refunds:
                if left > 0:
                    try:
                        st.refund(self.dep, row.order_id, _pk(row.owner), row.asset, left)
                    except LedgerError as err:  # a frozen owner's refund waits for its
                        if err.code != "account_frozen":  # thaw (suspension.pay_held)
                            raise


def _open(c: Connection, order_id: str) -> None:
    c.execute(
        update(books.orders)
        .where(books.orders.c.order_id == order_id, books.orders.c.status == PENDING)
        .values(status="open")
    )


def _id_ms(order_id: str) -> int:
    """The milliseconds an order id (`trading.order_id`) was made at; 0 if it has none."""
    try:
        return int(order_id.removeprefix("o-")[:12], 16)
    except ValueError:
        return 0


def _pk(text: object) -> Pubkey:
    return Pubkey.from_string(str(text))
