"""Structured logs: one JSON line per request with its request id, the id echoed to the
caller (its own when sane, a new one otherwise), and errors logged with the id of the
request they happened in."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from platform_site import Site

from gridtokenx.hub import logs


@pytest.fixture
def site(sqlite_site: Site) -> Site:
    logs.install(sqlite_site.app)
    return sqlite_site
    logging.getLogger("gridtokenx").handlers[:] = []
    logging.getLogger("gridtokenx").propagate = True


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_each_request_logs_one_json_line_with_its_id(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("json")
    ok = site.client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert ok.headers["X-Request-ID"] == "abc-123"
    refused = site.client.get("/api/v1/me", headers={"X-Request-ID": "bad id; drop"})
    fresh = refused.headers["X-Request-ID"]
    assert refused.status_code == 401 and len(fresh) == 32 and fresh != "bad id"
    got = lines(capsys.readouterr().err)
    assert [(e["logger"], e["request_id"], e["path"], e["status"]) for e in got] == [
        ("gridtokenx.access", "abc-123", "/health", 200),
        ("gridtokenx.access", fresh, "/api/v1/me", 401),
    ]
    assert {e["level"] for e in got} == {"info"} and all(e["method"] == "GET" for e in got)


def test_an_error_logged_outside_a_request_has_no_id_and_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json")
    try:
        try:
            raise RuntimeError("ledger away")
        except RuntimeError:
            logging.getLogger("gridtokenx.agents").exception("agents: this round failed")
        (entry,) = lines(capsys.readouterr().err)
        assert entry["message"] == "agents: this round failed" and "request_id" not in entry
        assert entry["level"] == "error" and "RuntimeError: ledger away" in str(entry["error"])
    finally:
        logging.getLogger("gridtokenx").handlers[:] = []
        logging.getLogger("gridtokenx").propagate = True


def test_the_hub_logs_json_lines_with_request_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from gridtokenx.hub.store import HubStore, connect
    from gridtokenx.hub.web import HubContext, create_app

    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    app = create_app(HubContext(store))
    logs.install(app)
    logs.configure("json")
    try:
        client = TestClient(app)
        ok = client.get("/ready", headers={"X-Request-ID": "hub-req-1"})
        missing = client.get("/api/proof/m1/1")
        assert ok.headers["X-Request-ID"] == "hub-req-1" and missing.status_code == 401
        fresh = missing.headers["X-Request-ID"]
        got = lines(capsys.readouterr().err)
        assert [(e["logger"], e["request_id"], e["path"], e["status"]) for e in got] == [
            ("gridtokenx.access", "hub-req-1", "/ready", 200),
            ("gridtokenx.access", fresh, "/api/proof/m1/1", 401),
        ]
    finally:
        logging.getLogger("gridtokenx").handlers[:] = []
        logging.getLogger("gridtokenx").propagate = True
        store.engine.dispose()
