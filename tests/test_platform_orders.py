"""Order placement refusals that change nothing, and the books file's mode (SQLite)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from platform_site import ADMIN_H, Clock, Site, fund, signup
from sqlalchemy import func, select

from gridtokenx.adapters import books


def test_an_order_worth_nothing_is_refused_not_a_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path, None, Clock())
    r = s.client.put("/api/v1/admin/market/parameters", headers=ADMIN_H, json={"min_price": 1})
    assert r.status_code == 200 and r.json()["min_price"] == 1
    buyer = signup(s.client, "b@x.org", "consumer")
    fund(s, buyer, thb=1_000_000)
    tiny = {"side": "buy", "quantity_wh": 1, "price": 1}  # 1 Wh at 1 uTHB/kWh: 0 uTHB
    r = s.client.post("/api/v1/orders", headers=buyer["auth"], json=tiny)
    assert (r.status_code, r.json()["code"]) == (422, "order_too_small")
    with s.platform.books.connect() as c:
        assert c.execute(select(func.count()).select_from(books.orders)).scalar_one() == 0
    assert s.client.get("/api/v1/wallet", headers=buyer["auth"]).json()["thb_micro"] == 1_000_000
    s.close()


def test_the_books_file_is_the_owners_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path, None, Clock())
    signup(s.client, "someone@x.org")  # personal data in the books
    for name in ("books.db", "books.db-wal", "books.db-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    s.close()


def test_bench_api_measures_a_baseline_with_the_same_client() -> None:
    from services import gridtokenx

    done = gridtokenx("bench", "api", "--orders", "40", "--concurrency", "4", "--json", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = __import__("json").loads(done.stdout)
    assert set(figures) == {
        "orders",
        "concurrency",
        "seconds",
        "orders_per_s",
        "p50_ms",
        "p99_ms",
        "errors",
        "baseline_rps",
        "fronts",
    }
    assert (figures["orders"], figures["errors"], figures["fronts"]) == (40, 0, 1)
    assert figures["baseline_rps"] > 0 and figures["p99_ms"] >= figures["p50_ms"]


def test_order_ids_grow_with_time() -> None:
    import time

    from gridtokenx.services.market_base import order_id

    first = order_id()
    time.sleep(0.002)
    second = order_id()
    assert first < second and len(first) == len(second) == 22 and first.startswith("o-")


def test_the_server_parses_http_in_c_on_uvloop() -> None:
    """`platform run` leaves uvicorn's choice on auto: with httptools and uvloop installed (the
    project's dependencies) it takes them, about twice the requests/s of h11 on asyncio."""
    import sys

    import uvicorn
    from fastapi import FastAPI

    config = uvicorn.Config(FastAPI(), host="127.0.0.1", port=0)
    config.load()
    assert config.http_protocol_class.__module__ == "uvicorn.protocols.http.httptools_impl"
    if sys.platform != "win32":
        assert config.get_loop_factory().__module__.startswith("uvloop")
