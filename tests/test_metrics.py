"""Monitoring: the platform's market and ledger metrics with exact values after a traded and
settled epoch, and the Grafana dashboard naming only metrics that the platform and the hub
export (scraped from their real apps)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from platform_site import EPOCH_S, Clock, Site, fund, signup
from prometheus_client.parser import text_string_to_metric_families

from gridtokenx.hub.store import HubStore, connect
from gridtokenx.hub.web import HubContext
from gridtokenx.hub.web import create_app as hub_app

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/dashboards/gridtokenx.json"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Clock]]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    clock = Clock()
    s = Site(tmp_path / "platform", None, clock)
    yield s, clock
    s.close()


def samples(text: str) -> dict[str, float]:
    """`name{label="v",...}` -> value, for every sample of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def names(text: str) -> set[str]:
    """Every series name a query may use: families and their samples (_total, _bucket ...),
    labelled families without a child yet included."""
    out = set()
    for family in text_string_to_metric_families(text):
        out.add(family.name)
        out.update(s.name for s in family.samples)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        out.update(family.name + suffix for suffix in suffixes.get(family.type, []))
    return out


def test_market_and_ledger_metrics_after_a_settled_epoch(site: tuple[Site, Clock]) -> None:
    s, clock = site
    c = s.client
    seller, buyer = signup(c, "s@x.org"), signup(c, "b@x.org", "consumer")
    fund(s, seller, grx=5_000)
    fund(s, buyer, thb=50_000_000)
    before = samples(c.get("/metrics").text)
    assert before["gtx_traded_wh_total"] == 0 and before["gtx_trades_total"] == 0
    assert before["gtx_epoch_pipeline_seconds_count"] == 0
    assert before["gtx_ledger_up"] == 1 and before["gtx_grx_supply_wh"] == 5_000
    for body in (
        {"side": "sell", "quantity_wh": 3_000, "price": 3_000_000},
        {"side": "sell", "quantity_wh": 500, "price": 3_500_000},
    ):
        assert c.post("/api/v1/orders", headers=seller["auth"], json=body).status_code == 201
    buy = {"side": "buy", "quantity_wh": 2_000, "price": 4_000_000}
    assert c.post("/api/v1/orders", headers=buyer["auth"], json=buy).status_code == 201
    placed = samples(c.get("/metrics").text)
    assert placed['gtx_orders{status="open"}'] == 3
    current = c.get("/api/v1/market/epochs/current").json()["epoch"]
    clock.now += EPOCH_S
    assert s.trading.tick() == [current]
    epoch = c.get(f"/api/v1/market/epochs/{current}").json()
    after = samples(c.get("/metrics").text)
    assert after["gtx_traded_wh_total"] == 2_000 and after["gtx_trades_total"] == 1
    assert {k: v for k, v in after.items() if k.startswith("gtx_orders{")} == {
        'gtx_orders{status="expired"}': 2,
        'gtx_orders{status="filled"}': 1,
    }
    assert after['gtx_epochs{state="settled"}'] == 1
    assert after["gtx_settlement_transactions_total"] == len(epoch["transactions"]) >= 1
    assert after["gtx_epoch_pipeline_seconds_count"] == 1
    assert after["gtx_epoch_pipeline_failures_total"] == 0
    assert after["gtx_ledger_up"] == 1 and after["gtx_grx_supply_wh"] == 5_000
    assert 0 < after["gtx_ledger_probe_seconds"] < 10


def test_a_failing_epoch_pipeline_is_counted(site: tuple[Site, Clock]) -> None:
    s, clock = site
    c = s.client
    clock.now += EPOCH_S
    books = s.platform.books
    s.platform.books.dispose()
    from sqlalchemy import create_engine

    # the database goes away under the pipeline: a path nobody can open
    s.trading.engine = create_engine("sqlite:////nonexistent/dir/books.db")
    with pytest.raises(Exception):  # noqa: B017 - whatever the database layer raises
        s.trading.tick()
    s.trading.engine = books
    text = c.get("/metrics").text
    assert samples(text)["gtx_epoch_pipeline_failures_total"] == 1


def test_every_dashboard_query_names_an_exported_metric(
    site: tuple[Site, Clock], tmp_path: Path
) -> None:
    s, _ = site
    exported = names(s.client.get("/metrics").text)
    hub = HubContext(HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}")))
    exported |= names(TestClient(hub_app(hub)).get("/metrics").text)
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= len(dashboard["panels"]) == 23
    used = set()
    for expr in exprs:
        found = set(re.findall(r"\b(gtx_[a-z0-9_]+)", expr))
        assert found, f"no GridTokenX metric in {expr!r}"
        used |= found
    assert sorted(used - exported) == []
    # and what the platform's issue asks to be watched is on the dashboard
    for wanted in (
        "gtx_orders",
        "gtx_traded_wh_total",
        "gtx_epoch_pipeline_seconds_bucket",
        "gtx_settlement_transactions_total",
        "gtx_epoch_pipeline_failures_total",
        "gtx_ledger_up",
        "gtx_cosign_seconds_bucket",
        "gtx_hub_readings_rejected",
        "gtx_hub_meter_last_reading_timestamp_seconds",
        "gtx_hub_meter_missing_readings",
        "gtx_hub_readings_total",
        "gtx_hub_ingest_seconds_bucket",
        "gtx_hub_ingest_backlog",
    ):
        assert wanted in used


def test_hub_per_meter_metrics(tmp_path: Path) -> None:
    from hub_readings import KEY, NOW, ingest, reading, sealed

    from gridtokenx.hub.rules import MeterStatus

    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    store.add_meter("m1", bytes(KEY.verify_key), rated_power_w=5_000, status=MeterStatus.APPROVED)
    store.add_meter("m2", bytes(32))  # pending, never heard from
    # seq 1, then 5: 2, 3 and 4 are missing
    assert ingest(store, sealed(reading(1)), sealed(reading(5, NOW - 300, 1_100))) == [
        "accepted",
        "accepted",
    ]
    got = samples(TestClient(hub_app(HubContext(store))).get("/metrics").text)
    assert {k: v for k, v in got.items() if k.startswith("gtx_hub_meter")} == {
        'gtx_hub_meter_last_reading_timestamp_seconds{meter="m1"}': NOW - 300,
        'gtx_hub_meter_missing_readings{meter="m1"}': 3,
        'gtx_hub_meters{status="approved"}': 1,
        'gtx_hub_meters{status="pending"}': 1,
    }
    store.engine.dispose()


def test_cosigning_a_hub_batch_is_timed_and_a_refusal_counted(
    served_hub: dict[str, Any],  # the fixture of tests/conftest.py
) -> None:
    import httpx
    from outbox_site import HUB_TOKEN, NOW, feed

    from gridtokenx.hub import batches
    from gridtokenx.hub.outbox import Outbox

    store, key, server = (served_hub[k] for k in ("store", "key", "server"))
    feed(store, range(1, 4), NOW)
    batches.build(store, "hub-001", 1, NOW + 1, key)
    assert Outbox(store, key, server.url, HUB_TOKEN).run_once()["submitted"] == 1
    refused = httpx.post(
        f"{server.url}/api/v1/hub/batches/99/signatures",
        headers={"Authorization": f"Bearer {HUB_TOKEN}"},
        json={"signatures": []},
    )
    assert 400 <= refused.status_code < 500, refused.text
    got = samples(httpx.get(f"{server.url}/metrics").text)
    cosign = {k: v for k, v in got.items() if k.startswith("gtx_cosign") and "_bucket" not in k}
    assert {k: v for k, v in cosign.items() if "_sum" not in k and "_created" not in k} == {
        'gtx_cosign_seconds_count{step="receive"}': 1,
        'gtx_cosign_seconds_count{step="sign"}': 2,
        'gtx_cosign_refusals_total{step="sign"}': 1,
    }


def test_hub_ingest_counts_verdicts_and_reasons_and_times_batches(tmp_path: Path) -> None:
    from hub_readings import KEY, NOW, reading, sealed
    from nacl.signing import SigningKey

    from gridtokenx.hub.ingest import Ingestor
    from gridtokenx.hub.mqtt import MqttIngest
    from gridtokenx.hub.rules import MeterStatus, RuleConfig
    from gridtokenx.wire.topics import reading_topic

    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    store.add_meter("m1", bytes(KEY.verify_key), status=MeterStatus.APPROVED)
    ingestor = Ingestor(store, RuleConfig(min_interval_s=10), clock=lambda: NOW)
    mqtt = MqttIngest(ingestor)  # never connected: only its ingestor is used here
    topic = reading_topic("m1")
    first, second = sealed(reading(1)), sealed(reading(2, NOW - 540, 1_050))
    forged = sealed(reading(3, NOW - 480, 1_100), SigningKey(b"\x01" * 32))
    ingestor.ingest([(topic, first), (topic, second), (topic, forged)])
    ingestor.ingest([(topic, second), (topic, b"\xff junk")])
    got = samples(TestClient(hub_app(HubContext(store, ingest=mqtt))).get("/metrics").text)
    assert {k: v for k, v in got.items() if k.startswith("gtx_hub_readings_total")} == {
        'gtx_hub_readings_total{reason="ok",verdict="accepted"}': 2,
        'gtx_hub_readings_total{reason="bad_signature",verdict="rejected"}': 1,
        'gtx_hub_readings_total{reason="duplicate",verdict="duplicate"}': 1,
        'gtx_hub_readings_total{reason="malformed_cbor",verdict="rejected"}': 1,
    }
    assert got["gtx_hub_ingest_seconds_count"] == 2
    assert (
        got["gtx_hub_ingest_batch_messages_count"],
        got["gtx_hub_ingest_batch_messages_sum"],
    ) == (2, 5)
    store.engine.dispose()
