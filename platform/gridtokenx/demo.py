"""`gridtokenx up` for now: a neighbourhood trading on an accelerated clock.

Until the hub, simulator, ledger and platform services exist (their issues), `make run`
shows the market engine at work: households with solar offer their surplus, others
bid for their need, and every (accelerated) epoch clears by uniform-price auction.
"""

from __future__ import annotations

import random
import signal
import threading
import time

from rich.console import Console
from rich.table import Table

from gridtokenx.market.config import MarketConfig, Mechanism
from gridtokenx.market.engine import Market
from gridtokenx.market.epochs import Epoch
from gridtokenx.market.orders import Order, Side
from gridtokenx.units import kwh, thb

HOUSEHOLDS = 20


def _orders(epoch: int, rng: random.Random) -> list[Order]:
    orders = []
    for house in range(HOUSEHOLDS):
        solar = house % 3 == 0
        side = Side.SELL if solar else Side.BUY
        # solar houses ask 2.5-4.0 THB/kWh; others bid 3.0-5.5 (grid tariff ~4.2)
        low, high = (250, 400) if solar else (300, 550)
        orders.append(
            Order(
                id=f"e{epoch}-h{house}",
                owner=f"house-{house:02d}",
                side=side,
                quantity_wh=rng.randrange(100, 1500),
                price=rng.randrange(low, high) * 10_000,
            )
        )
    return orders


def run_demo(
    epochs: int = 0,
    epoch_seconds: float = 2.0,
    seed: int = 7,
    stop: threading.Event | None = None,
    deadline: float | None = None,
) -> None:
    """Clear `epochs` epochs (0 = until stopped), one every `epoch_seconds`. Stops on
    `stop` (or SIGINT/SIGTERM when no event is given) or at the monotonic `deadline`."""
    console = Console()
    if stop is None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())

    def stopping() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    rng = random.Random(seed)
    epoch = Epoch.at(int(time.time()))
    market = Market(MarketConfig(mechanism=Mechanism.UNIFORM), epoch=epoch.number)
    console.print(
        "[bold]GridTokenX market demo[/bold]: 20 households, uniform-price epochs every "
        f"{epoch_seconds:g} s (stands for 15 min)."
    )
    done = 0
    while not stopping() and (epochs == 0 or done < epochs):
        for order in _orders(market.epoch, rng):
            market.place(order)
        outcome = market.clear_epoch()
        if outcome.halted:
            console.print(
                f"[yellow]circuit breaker:[/yellow] {outcome.halted}; "
                "the demo's operator reviews it and resumes the market"
            )
            market.resume()
            outcome = market.clear_epoch()
        table = Table(title=f"epoch {outcome.epoch}")
        for column in ("trades", "volume kWh", "price THB/kWh", "welfare THB", "fees THB"):
            table.add_column(column)
        table.add_row(
            str(len(outcome.trades)),
            f"{kwh(outcome.volume_wh):.3f}",
            "-" if outcome.clearing_price is None else f"{thb(outcome.clearing_price):.4f}",
            f"{outcome.welfare_uthb / 1e6:.4f}",
            f"{thb(sum(t.receipt.fee for t in outcome.trades)):.6f}",
        )
        console.print(table)
        done += 1
        until = time.monotonic() + epoch_seconds
        while not stopping() and time.monotonic() < until and (epochs == 0 or done < epochs):
            time.sleep(0.05)
    console.print("stopped cleanly.")
