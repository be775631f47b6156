"""Idempotency-Key on POST /api/v1/orders over real HTTP: concurrent duplicates place one
order and escrow once; a different body with the same key is refused; a refused request
gives its key back. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from databases import database
from platform_site import Clock, Site, fund, served, signup
from sqlalchemy import func, select

from gridtokenx.adapters.tables import idempotency, market_orders

SELL = {"side": "sell", "quantity_wh": 700, "price": 3_000_000}


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database(request.param, tmp_path) as url:
        s = Site(tmp_path / "platform", None if request.param == "sqlite" else url, Clock())
        yield s
        s.close()


def count_orders(s: Site) -> int:
    with s.platform.books.connect() as c:
        return int(c.execute(select(func.count()).select_from(market_orders)).scalar_one())


def test_twenty_parallel_requests_with_one_key_place_one_order(site: Site) -> None:
    s = site
    seller = signup(s.client, "s@x.org")
    fund(s, seller, grx=5_000)
    headers = {**seller["auth"], "Idempotency-Key": "one-key"}
    start = threading.Barrier(20)
    answers: list[tuple[int, dict[str, object]]] = []
    lock = threading.Lock()
    with served(s.app) as base:

        def post() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                start.wait()
                r = client.post("/api/v1/orders", headers=headers, json=SELL)
                with lock:
                    answers.append((r.status_code, r.json()))

        threads = [threading.Thread(target=post) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(answers) == 20
    assert {status for status, _ in answers} == {201}
    first = answers[0][1]
    assert all(body == first for _, body in answers)  # every duplicate got the first result
    assert first["quantity_wh"] == 700 and first["status"] == "open"
    assert count_orders(s) == 1
    wallet = s.client.get("/api/v1/wallet", headers=seller["auth"]).json()
    assert wallet["grx_wh"] == 5_000 - 700  # escrowed once


def test_a_key_reused_for_another_body_is_refused_and_changes_nothing(site: Site) -> None:
    s = site
    seller = signup(s.client, "s@x.org")
    fund(s, seller, grx=5_000)
    headers = {**seller["auth"], "Idempotency-Key": "k"}
    assert s.client.post("/api/v1/orders", headers=headers, json=SELL).status_code == 201
    other = {**SELL, "quantity_wh": 800}
    r = s.client.post("/api/v1/orders", headers=headers, json=other)
    assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_reused")
    assert count_orders(s) == 1
    assert s.client.get("/api/v1/wallet", headers=seller["auth"]).json()["grx_wh"] == 4_300
    # keys are per user: another user's "k" is its own
    buyer = signup(s.client, "b@x.org", "consumer")
    fund(s, buyer, thb=10_000_000)
    buy = {"side": "buy", "quantity_wh": 100, "price": 3_000_000}
    r = s.client.post("/api/v1/orders", headers={**buyer["auth"], "Idempotency-Key": "k"}, json=buy)
    assert r.status_code == 201 and r.json()["side"] == "buy"


def test_a_refused_request_gives_its_key_back(site: Site) -> None:
    s = site
    seller = signup(s.client, "s@x.org")
    headers = {**seller["auth"], "Idempotency-Key": "later"}
    poor = s.client.post("/api/v1/orders", headers=headers, json=SELL)
    assert (poor.status_code, poor.json()["code"]) == (422, "insufficient_funds")
    with s.platform.books.connect() as c:
        assert c.execute(select(func.count()).select_from(idempotency)).scalar_one() == 0
    fund(s, seller, grx=1_000)
    r = s.client.post("/api/v1/orders", headers=headers, json=SELL)
    assert r.status_code == 201 and count_orders(s) == 1


def test_a_claim_cut_short_by_a_crash_is_freed_at_restart(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gridtokenx.adapters import idempotency as claims
    from gridtokenx.services.market_base import STALE_CLAIM_S

    s = site
    seller = signup(s.client, "s@x.org")
    fund(s, seller, grx=1_000)
    clock = s.trading.clock
    assert isinstance(clock, Clock)
    sha = claims.fingerprint({"x": 1})
    assert claims.claim(s.platform.books, seller["user_id"], "cut", sha, int(clock())) is None
    clock.now += STALE_CLAIM_S + 1
    s.trading.recover()  # what a restart runs
    assert claims.lookup(s.platform.books, seller["user_id"], "cut") is None
    headers = {**seller["auth"], "Idempotency-Key": "cut"}
    assert s.client.post("/api/v1/orders", headers=headers, json=SELL).status_code == 201
