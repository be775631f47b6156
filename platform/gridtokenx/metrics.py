"""The platform's Prometheus metrics beyond the API's own (`gtx_api_*`): the market and the
ledger, as the dashboards in deploy/grafana/dashboards/ show them.

Read from the books at scrape time (orders by status, epochs by state, traded energy,
settlement transactions), so every instance of a site reports the same figures and a restart
loses none; measured in process (the epoch pipeline's duration and failures); and probed
(the ledger answering, and how long it takes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from gridtokenx.adapters import books
from gridtokenx.adapters.tables import epochs, market_orders

PIPELINE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class PlatformMetrics(Collector):
    """Collects the market's and the ledger's figures; `instrument` times the epoch pipeline
    (close, clear, grid check, settle, record) of a `Trading`, and `register` also times the
    platform's co-signing of hubs' batches."""

    def __init__(self, platform: Any, trading: Any = None) -> None:
        self.platform = platform
        self.trading = trading
        self.pipeline = Histogram(
            "gtx_epoch_pipeline_seconds",
            "Closing an epoch: clearing, grid check, settlement on the ledger, books",
            buckets=PIPELINE_BUCKETS,
            registry=None,
        )
        self.failures = Counter(
            "gtx_epoch_pipeline_failures",
            "Epoch pipelines that raised (ledger or database away); retried on the next tick",
            registry=None,
        )

        self.cosign = Histogram(
            "gtx_cosign_seconds",
            "Co-signing a hub's batch: receive (re-verify, propose) and sign (collect, mint)",
            ["step"],
            buckets=PIPELINE_BUCKETS,
            registry=None,
        )
        self.cosign_refused = Counter(
            "gtx_cosign_refusals",
            "Batches or signatures the co-signer refused or failed on, by step",
            ["step"],
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        for metric in (self.pipeline, self.failures, self.cosign, self.cosign_refused, self):
            registry.register(metric)
        if self.trading is not None:
            self.instrument(self.trading)
        for step, name in (("receive", "receive_batch"), ("sign", "sign_batch")):
            if hasattr(self.platform, name):
                self._time_cosign(step, name)

    def _time_cosign(self, step: str, name: str) -> None:
        inner = getattr(self.platform, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            except Exception:
                self.cosign_refused.labels(step).inc()
                raise
            finally:
                self.cosign.labels(step).observe(time.perf_counter() - start)

        setattr(self.platform, name, timed)

    def instrument(self, trading: Any) -> None:
        """Time every `close_epoch` of this `trading` (the scheduler's and an order's tick)."""
        inner = trading.close_epoch

        def timed() -> int:
            start = time.perf_counter()
            try:
                result: int = inner()
                return result
            except Exception:
                self.failures.inc()
                raise
            finally:
                self.pipeline.observe(time.perf_counter() - start)

        trading.close_epoch = timed

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily("gtx_orders", "Orders by status", labels=["status"]),
            GaugeMetricFamily("gtx_epochs", "Closed epochs by state", labels=["state"]),
            CounterMetricFamily("gtx_traded_wh", "Energy traded, Wh"),
            CounterMetricFamily("gtx_trades", "Trades cleared"),
            CounterMetricFamily("gtx_settlement_transactions", "Settlement transactions landed"),
            GaugeMetricFamily("gtx_ledger_up", "1 when the ledger answered the last probe"),
            GaugeMetricFamily("gtx_ledger_probe_seconds", "How long the ledger took to answer"),
            GaugeMetricFamily("gtx_grx_supply_wh", "GRX supply on the ledger, Wh"),
        )

    def collect(self) -> Iterator[Metric]:
        orders, states, traded, trades, settlement, up, probe, supply = self._families()
        with self.platform.books.connect() as c:
            for status, n in c.execute(
                select(market_orders.c.status, func.count()).group_by(market_orders.c.status)
            ):
                orders.add_metric([status], n)
            transactions = 0
            by_state: dict[str, int] = {}
            for state, sent in c.execute(select(epochs.c.state, epochs.c.transactions)):
                by_state[state] = by_state.get(state, 0) + 1
                transactions += len(json.loads(sent)) if sent else 0
            volume, count = c.execute(
                select(func.coalesce(func.sum(books.trades.c.wh), 0), func.count()).select_from(
                    books.trades
                )
            ).one()
        for state, n in sorted(by_state.items()):
            states.add_metric([state], n)
        traded.add_metric([], int(volume))
        trades.add_metric([], int(count))
        settlement.add_metric([], transactions)
        start = time.perf_counter()
        try:
            grx = self.platform.dep.grx.supply()
        except Exception:  # the ledger is away: that is what this metric says
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            supply.add_metric([], int(grx))
        probe.add_metric([], time.perf_counter() - start)
        yield from (orders, states, traded, trades, settlement, up, probe, supply)
