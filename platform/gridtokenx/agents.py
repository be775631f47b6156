"""The demo's households as trading agents (`gridtokenx up`): one per household with a
custodial wallet, placing real orders through the same service as the API.

The strategy (`decide`, pure) is documented, not optimal:

- Forecast: persistence. The next epoch's net flow is the household's average import and
  export power over its meters' newest readings (about a minute, from the hubs' batches)
  times the epoch's length.
- A PV home sells only its forecast surplus, and only from the GRX it holds (minted from
  its export); a home with a deficit buys only that deficit, if its THB pays for it. A home
  never buys and sells in one epoch.
- Prices follow the tariffs: between the feed-in tariff F (what the utility pays for export)
  and the retail tariff R (what it charges for import), any trade beats the utility for
  both sides. A PV home asks F + 44 % of (R - F); a home bids F + 56 %; so households'
  orders cross and clear every epoch both sides are present. The band is kept narrow (bid /
  ask = 1.077) so that no clearing price among the agents' orders is 10 % away from another:
  the market's circuit breaker (docs/market.md) would halt the market.
- A battery home keeps its GRX as its battery's charge (up to the capacity): from 09:00 to
  16:00 (site time, GTX_SITE_TZ) it sells none of its surplus while it has room and bids
  for cheap surplus at F + 47 %, below the homes' bids, so it charges only from what is
  left over; from 17:00 to 21:00 (the evening peak) it sells its charge at F + 53 %, below
  the homes' bids and above what it paid (a spread that pays for a round trip better than
  96 %; a wider one would trip the breaker).

Batteries behind the meter are modelled by the simulator (self-consumption); a battery home
here is a market participant whose stored energy is the GRX it holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo

from solders.pubkey import Pubkey

from gridtokenx.adapters import queries
from gridtokenx.adapters.tables import users
from gridtokenx.market.errors import MarketError
from gridtokenx.services.trading import Trading
from gridtokenx.sitetime import epoch_start, site_zone

log = logging.getLogger(__name__)

ASK_PV_PCT = 44  # of (retail - feed-in) above the feed-in tariff
BID_HOME_PCT = 56
BID_CHARGE_PCT = 47
ASK_PEAK_PCT = 53
CHARGE_HOURS = range(9, 16)  # site time: the battery charges from midday surplus
PEAK_HOURS = range(17, 21)  # the evening peak: the battery sells


@dataclass(frozen=True)
class Tariffs:
    """The utility's tariffs in micro-THB per kWh (the scenarios' defaults)."""

    retail: int = 4_180_000
    feed_in: int = 2_200_000

    def between(self, pct: int) -> int:
        """F + pct % of (R - F), rounded down to a micro-THB."""
        return self.feed_in + (self.retail - self.feed_in) * pct // 100


@dataclass(frozen=True)
class Household:
    """What an agent knows before an epoch: its balances and its forecast."""

    grx_wh: int  # GRX held (1 GRX = 1 kWh; counted in Wh)
    thb: int  # micro-THB
    surplus_wh: int  # forecast export over the epoch (>= 0)
    deficit_wh: int  # forecast import over the epoch (>= 0)
    battery_wh: int = 0  # battery capacity; 0: none
    charge_wh: int = 0  # the most the battery takes in or gives out in one epoch


@dataclass(frozen=True)
class Order:
    side: str
    quantity_wh: int
    price: int  # micro-THB per kWh


def forecast(import_w: int, export_w: int, epoch_s: float) -> tuple[int, int]:
    """(surplus, deficit) Wh over an epoch of `epoch_s` from average import and export power:
    the net flow persists."""
    net_w = import_w - export_w
    wh = int(abs(net_w) * epoch_s) // 3600
    return (wh, 0) if net_w < 0 else (0, wh)


def decide(h: Household, hour: int, tariffs: Tariffs, max_wh: int) -> list[Order]:
    """This epoch's orders for a household at `hour` (0-23, site time)."""
    orders: list[Order] = []
    if h.battery_wh and hour in PEAK_HOURS:
        sell = min(h.grx_wh, h.charge_wh, max_wh)
        if sell > 0:
            orders.append(Order("sell", sell, tariffs.between(ASK_PEAK_PCT)))
        return orders  # the battery covers the home's own evening deficit
    room = max(0, h.battery_wh - h.grx_wh) if hour in CHARGE_HOURS else 0
    if h.surplus_wh > 0:
        keep = min(room, h.surplus_wh)  # charging: the battery takes the surplus first
        sell = min(h.surplus_wh - keep, h.grx_wh, max_wh)
        if sell > 0:
            orders.append(Order("sell", sell, tariffs.between(ASK_PV_PCT)))
        return orders
    bid = tariffs.between(BID_HOME_PCT)
    want = min(h.deficit_wh, max_wh)
    if want > 0 and h.thb >= want * bid // 1000:
        orders.append(Order("buy", want, bid))
    charge = min(room, h.charge_wh, max_wh)
    price = tariffs.between(BID_CHARGE_PCT)
    spent = orders[0].quantity_wh * bid // 1000 if orders else 0
    if charge > 0 and h.thb - spent >= charge * price // 1000:
        orders.append(Order("buy", charge, price))
    return orders


@dataclass
class Agents:
    """The agents of every active custodial household, trading once per epoch."""

    trading: Trading
    tariffs: Tariffs = field(default_factory=Tariffs)
    zone: tzinfo = field(default_factory=site_zone)
    battery_homes: int = 1  # the first consumers (by email) own a battery
    battery_wh: int = 5_000
    battery_w: int = 3_000
    flows: Callable[[], dict[str, tuple[int, int]]] | None = None  # wallet: (import W, export W)
    traded_epoch: int = -1
    stop: threading.Event = field(default_factory=threading.Event)

    def households(self) -> list[tuple[str, str, str, str]]:
        with self.trading.engine.connect() as c:
            rows = c.execute(
                users.select()
                .where(
                    users.c.custodial.is_(True),
                    users.c.status == "active",
                    users.c.role.in_(("consumer", "prosumer")),
                )
                .order_by(users.c.email)
            ).all()
        return [(r.user_id, r.wallet, r.role, r.email or "") for r in rows]

    def act(self) -> int:
        """Place this epoch's orders (once per epoch); how many were placed."""
        t = self.trading
        if t.market.epoch == self.traded_epoch or t.market.halted:
            return 0
        epoch = t.market.epoch
        start = epoch_start(epoch, t.epoch_s, self.zone)
        dep = t.platform.dep
        flows = self.flows() if self.flows else queries.recent_flows(t.engine)
        placed, consumers = 0, 0
        for user_id, wallet, role, _email in self.households():
            battery = 0
            if role == "consumer":
                consumers += 1
                battery = self.battery_wh if consumers <= self.battery_homes else 0
            owner = Pubkey.from_string(wallet)
            surplus, deficit = forecast(*flows.get(wallet, (0, 0)), t.epoch_s)
            home = Household(
                grx_wh=dep.grx.balance(owner),
                thb=dep.thb.balance(owner),
                surplus_wh=surplus,
                deficit_wh=deficit,
                battery_wh=battery,
                charge_wh=int(self.battery_w * t.epoch_s) // 3600 if battery else 0,
            )
            for order in decide(home, start.hour, self.tariffs, t.config.max_quantity_wh):
                try:
                    t.place(user_id, order.side, order.quantity_wh, order.price)
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
