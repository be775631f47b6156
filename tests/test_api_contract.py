"""The API's OpenAPI document is a contract clients can generate code from: every operation
names its answer's schema and every error status it can return, each with the one error
schema; the pages are not in it. (tests/test_api_fuzz.py checks the answers against it.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gridtokenx.accounts import Accounts
from gridtokenx.api.app import create_app
from gridtokenx.market.config import MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

ERROR = {"$ref": "#/components/schemas/ErrorOut"}


@pytest.fixture
def document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    platform = Platform(tmp_path / "p")
    app = create_app(
        platform,
        None,
        Trading(platform, MarketConfig(), 900.0),
        Accounts(platform.books, b"c" * 32),
    )
    out: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    platform.books.dispose()
    return out


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if path.startswith("/api/")
    ]


def test_every_operation_declares_its_errors_with_the_one_schema(document: dict[str, Any]) -> None:
    ops = operations(document)
    assert len(ops) == 55  # 41 + statement + 5 governance + 2 allowance + 4 signed certificates
    # + trades + readings
    for path, method, op in ops:
        statuses = set(op["responses"])
        assert {"413", "422", "429"} <= statuses, (method, path)
        for status in statuses - {"200", "201", "204"}:
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == ERROR, (method, path, status)
    assert document["components"]["schemas"]["ErrorOut"]["required"] == ["code", "message"]
    by_name = {f"{m.upper()} {p}": set(op["responses"]) for p, m, op in ops}
    assert by_name["POST /api/v1/orders"] == {
        "201",
        "401",
        "403",
        "409",
        "413",
        "422",
        "429",
        "503",
    }
    assert by_name["GET /api/v1/market/epochs/{epoch}"] == {
        "200",
        "404",
        "413",
        "422",
        "429",
        "503",
    }
    assert by_name["POST /api/v1/auth/register"] == {"201", "409", "413", "422", "429", "503"}


def test_every_paged_list_declares_its_cursor_the_same_way(document: dict[str, Any]) -> None:
    """docs/platform.md "Lists": `limit` and `cursor` in, the next page's cursor out in the
    `Next-Cursor` header (an object body also carries it as `next_cursor`)."""
    paged = {}
    for path, method, op in operations(document):
        names = {p["name"] for p in op.get("parameters", [])}
        if "cursor" in names:
            assert "limit" in names, path
            assert "Next-Cursor" in op["responses"]["200"]["headers"], path
            paged[f"{method.upper()} {path}"] = names - {"cursor", "limit", "authorization"}
    assert paged == {
        "GET /api/v1/wallet": set(),
        "GET /api/v1/market/epochs": set(),
        "GET /api/v1/orders": set(),
        "GET /api/v1/trades": set(),
        "GET /api/v1/readings": set(),
        "GET /api/v1/admin/audit": set(),
        "GET /api/v1/admin/users": {"status"},
        "GET /api/v1/admin/governance": set(),
        "GET /api/v1/certificates": set(),
    }
    schemas = document["components"]["schemas"]
    assert "next_cursor" in schemas["WalletOut"]["properties"]
    assert "next_cursor" in schemas["ProposalsOut"]["properties"]
    assert "next_cursor" in schemas["AuditOut"]["properties"]


def test_every_answer_has_a_named_schema(document: dict[str, Any]) -> None:
    for path, method, op in operations(document):
        ok = next(s for s in op["responses"] if s.startswith("2"))
        if ok == "204":
            assert "content" not in op["responses"][ok], path
            continue
        schema = op["responses"][ok]["content"]["application/json"]["schema"]
        named = schema.get("$ref") or schema.get("items", {}).get("$ref")
        if path.startswith("/api/v1/grid/curtailments"):
            assert schema["type"] == "array"  # free-form rows of the power flow
            continue
        assert named is not None and named.startswith("#/components/schemas/"), (method, path)
    order = document["components"]["schemas"]["OrderIn"]["properties"]["quantity_wh"]
    assert (order["type"], order["exclusiveMinimum"], order["maximum"]) == ("integer", 0, 10**9)


def test_pages_stay_out_and_a_wrong_method_names_every_allowed_one(
    document: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sorted(p for p in document["paths"] if not p.startswith("/api/")) == [
        "/health",
        "/metrics",
        "/ready",
    ]
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path / "q")
    client = TestClient(create_app(platform, None, None, Accounts(platform.books, b"c" * 32)))
    r = client.request("OPTIONS", "/api/v1/orders")
    assert (r.status_code, r.headers["Allow"]) == (405, "GET, POST")
    assert r.json() == {"code": "method_not_allowed", "message": "Method Not Allowed"}
    platform.books.dispose()
