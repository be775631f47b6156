"""Simple trading agents for the demo (`gridtokenx up`), one per household with a custodial
wallet, placing real orders through the same service as the API:

- PV owners sell their surplus: all the GRX they hold (minted from their export), at a
  price just above the feed-in tariff;
- households buy their need: the energy they imported since their last buy (from their
  meter's batches), at a price below the retail tariff, if their THB allows.

Batteries are modelled in the simulator (self-consumption) and the scenarios, not by these
agents.

Documented strategies, not optimal ones: what they show is real orders, real escrow and
real settlement every epoch.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from solders.pubkey import Pubkey

from gridtokenx.adapters import queries
from gridtokenx.market.errors import MarketError
from gridtokenx.tables import users
from gridtokenx.trading import Trading

log = logging.getLogger(__name__)
SELL_PRICE = 3_000_000  # uTHB per kWh: above the feed-in tariff
BUY_PRICE = 4_500_000  # below the retail tariff
DEFAULT_NEED_WH = 300


@dataclass
class Agents:
    trading: Trading
    traded_epoch: int = -1
    last_import: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def households(self) -> list[tuple[str, str, str]]:
        with self.trading.engine.connect() as c:
            rows = c.execute(
                users.select().where(
                    users.c.custodial.is_(True),
                    users.c.status == "active",
                    users.c.role.in_(("consumer", "prosumer")),
                )
            ).all()
        return [(r.user_id, r.wallet, r.role) for r in rows]

    def imports(self) -> dict[str, int]:
        """Newest import register per owner wallet, from the hubs' batches."""
        return queries.newest_imports(self.trading.engine)

    def act(self) -> int:
        """Place this epoch's orders (once per epoch); how many were placed."""
        t = self.trading
        if t.market.epoch == self.traded_epoch or t.market.halted:
            return 0
        epoch = t.market.epoch
        dep = t.platform.dep
        imports = self.imports()
        placed = 0
        for user_id, wallet, _role in self.households():
            owner = Pubkey.from_string(wallet)
            grx, thb = dep.grx.balance(owner), dep.thb.balance(owner)
            used = imports.get(wallet, 0) - self.last_import.get(wallet, imports.get(wallet, 0))
            self.last_import[wallet] = imports.get(wallet, 0)
            need = used if used > 0 else DEFAULT_NEED_WH
            try:
                if grx > 0:
                    t.place(user_id, "sell", min(grx, t.config.max_quantity_wh), SELL_PRICE)
                    placed += 1
                elif thb >= need * BUY_PRICE // 1000:
                    t.place(user_id, "buy", min(need, t.config.max_quantity_wh), BUY_PRICE)
                    placed += 1
            except MarketError:
                continue  # e.g. the per-epoch order limit: the next epoch tries again
        self.traded_epoch = epoch  # done for this epoch (a round that raised is tried again)
        return placed

    def run(self, every_s: float = 1.0) -> None:
        while not self.stop.wait(every_s):
            try:
                self.act()
            except Exception:  # the ledger or database away: logged, tried again next round
                log.exception("agents: this round failed; trying again")
