"""The hub's metrics. Per meter, read from its database at scrape time (so a restart loses
none): when each meter was last heard from, how many readings it is missing, and the meters
by status. Per process (IngestMetrics): every decision by verdict and reason, and how long
each ingest batch took to decide and commit. Alongside the gauges of web.py."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from gridtokenx.hub import schema
from gridtokenx.hub.store import HubStore


class HubMetrics(Collector):
    def __init__(self, store: HubStore) -> None:
        self.store = store

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "gtx_hub_meter_last_reading_timestamp_seconds",
                "The newest accepted reading's own timestamp, per meter",
                labels=["meter"],
            ),
            GaugeMetricFamily(
                "gtx_hub_meter_missing_readings",
                "Sequence numbers skipped by a meter's accepted readings (its gaps)",
                labels=["meter"],
            ),
            GaugeMetricFamily("gtx_hub_meters", "Registered meters by status", labels=["status"]),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        last, missing, meters = self._families()
        gaps = schema.gaps.c
        with self.store.engine.connect() as c:
            for meter_id, ts in c.execute(select(schema.heads.c.meter_id, schema.heads.c.ts)):
                last.add_metric([meter_id], ts)
            skipped = func.sum(gaps.last_seq - gaps.first_seq + 1)
            for meter_id, n in c.execute(select(gaps.meter_id, skipped).group_by(gaps.meter_id)):
                missing.add_metric([meter_id], int(n))
            status = schema.meters.c.status
            for value, n in c.execute(select(status, func.count()).group_by(status)):
                meters.add_metric([value], n)
        yield from (last, missing, meters)


class IngestMetrics:
    """Counters and a histogram the ingest updates as it goes (registry=None: the web app
    registers them in its registry, `register`)."""

    def __init__(self) -> None:
        self.decisions = Counter(
            "gtx_hub_readings",
            "Messages decided by the ingest, by verdict (accepted, duplicate, rejected) and reason",
            ["verdict", "reason"],
            registry=None,
        )
        self.seconds = Histogram(
            "gtx_hub_ingest_seconds",
            "Time to decide and durably store one batch of messages",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=None,
        )
        self.batch = Histogram(
            "gtx_hub_ingest_batch_messages",
            "Messages per ingest batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        for metric in (self.decisions, self.seconds, self.batch):
            registry.register(metric)
