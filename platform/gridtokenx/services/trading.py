"""The market as a service (`Trading`): orders placed with escrow, epochs cleared and
settled on a clock, everything persisted so a restart resumes exactly. Its parts, one file
each: services/placing.py (orders: the group commit, the sequencer's entering, cancels),
services/epochs.py (close, clear, settle, recover); here the state they share, which
instance runs the market, the clock and the operators' settings.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from sqlalchemy import Connection, func, select
from sqlalchemy import text as sql

from gridtokenx import auditlog
from gridtokenx.adapters.events import Event
from gridtokenx.adapters.tables import market_orders, settings, users
from gridtokenx.keynames import key_user, user_key
from gridtokenx.ledger import settlement as st
from gridtokenx.ledger.keystore import Keystore
from gridtokenx.market.config import MarketConfig
from gridtokenx.market.engine import Market
from gridtokenx.market.errors import OrderRejected
from gridtokenx.services.epochs import Epochs
from gridtokenx.services.exchange import Exchange
from gridtokenx.services.market_base import (
    EPOCH_LOCK,
    LIVE,
    OPEN_EPOCH,
    epoch_of,
    halt_of,
)
from gridtokenx.services.placing import Placement, Placing
from gridtokenx.services.site import Platform


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


log = logging.getLogger(__name__)


class Trading(Placing, Epochs):
    """The market on one instance: its orders (`Placing`), its epochs (`Epochs`) and, here,
    the state both read, which instance sequences, the clock and the operators' settings."""

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
        halted = halt_of(saved.get("halt"))
        # a halted market stays on the epoch its live orders are in, until the resume
        epoch = self.current_epoch() if halted is None else self._oldest_live_epoch()
        self.market = Market(self.config, epoch=epoch)
        self.exchange = self._exchange(self.market)
        self.listeners: list[Callable[[Event], None]] = []
        self.publish_failures = 0  # listener calls that raised (`publish`)
        self._queue: deque[Placement] = deque()  # placements waiting for a group commit
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
            halted = halt_of(saved.get("halt"))
            if halted is None:
                epoch = max(self.current_epoch(), epoch_of(saved.get(OPEN_EPOCH)) or 0)
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
        self.market.halted = halt_of(saved.get("halt"))
        open_epoch = epoch_of(saved.get(OPEN_EPOCH))
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
        epoch = epoch_of(None if row is None else row.value)
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
