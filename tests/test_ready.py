"""The platform's /ready asks each dependency for real: the books' database, Redis when
configured, and the ledger; a 503 `not_ready` names what did not answer. Redis is a
redis-server of the test's own that is stopped; the database a PostgreSQL database that
is dropped."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import redis
from databases import database
from fastapi.testclient import TestClient
from services import free_port
from sqlalchemy import create_engine, text

from gridtokenx.api.app import create_app
from gridtokenx.services.site import Platform


@pytest.fixture(autouse=True)
def keystore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)


def test_ready_checks_database_redis_and_ledger(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        with database("postgresql", tmp_path) as books_url:
            platform = Platform(tmp_path / "p", books_url)
            app = TestClient(create_app(platform, redis_url=url))
            answer = app.get("/ready")
            assert answer.status_code == 200
            assert answer.json() == {
                "status": "ready",
                "grx_mint": str(platform.dep.grx.address),
                "checks": {"database": "ok", "redis": "ok", "ledger": "ok"},
            }
            server.terminate()
            server.wait(10)
            answer = app.get("/ready")
            assert (answer.status_code, answer.json()) == (
                503,
                {"code": "not_ready", "message": "redis: ConnectionError"},
            )
            platform.books.dispose()
            name = books_url.rsplit("/", 1)[1]
            admin = create_engine(
                books_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
            )
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.dispose()
            answer = app.get("/ready")
            assert answer.status_code == 503 and answer.json()["code"] == "not_ready"
            assert answer.json()["message"] == "database: OperationalError; redis: ConnectionError"
    finally:
        server.kill()
        server.wait(10)


def test_ready_without_redis_says_so(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "p")
    answer = TestClient(create_app(platform)).get("/ready")
    assert answer.status_code == 200
    assert answer.json()["checks"] == {
        "database": "ok",
        "redis": "not configured",
        "ledger": "ok",
    }
    platform.books.dispose()
