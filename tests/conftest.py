"""Fixtures shared by several test modules (helpers without fixtures are plain modules
beside this one: platform_site.py, outbox_site.py, hubproc.py, ...)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def served_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A hub (SQLite) with three approved meters, registered with a platform served over
    HTTP: its store, key, the platform, the server and the meters' owners."""
    import httpx
    from databases import database
    from outbox_site import ADMIN, HUB_TOKEN, METERS, Server
    from solders.keypair import Keypair

    from gridtokenx.hub import batches
    from gridtokenx.hub.rules import MeterStatus
    from gridtokenx.hub.store import HubStore, connect
    from gridtokenx.services.site import Platform

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database("sqlite", tmp_path) as url:
        store = HubStore(connect(url))
        for meter_id, key in METERS.items():
            store.add_meter(meter_id, bytes(key.verify_key), status=MeterStatus.APPROVED)
        hub_key = batches.hub_key(tmp_path / "hub.key")
        platform = Platform(tmp_path / "platform")
        server = Server(platform)
        owners = {m: Keypair().pubkey() for m in METERS}
        with httpx.Client(base_url=server.url) as admin:
            auth = {"Authorization": f"Bearer {ADMIN}"}
            r = admin.post(
                "/api/v1/admin/hubs",
                headers=auth,
                json={
                    "hub_id": "hub-001",
                    "public_key": bytes(hub_key.verify_key).hex(),
                    "token": HUB_TOKEN,
                },
            )
            assert r.status_code == 201, r.text
            for m, key in METERS.items():
                r = admin.post(
                    "/api/v1/admin/meters",
                    headers=auth,
                    json={
                        "meter_id": m,
                        "public_key": bytes(key.verify_key).hex(),
                        "owner": str(owners[m]),
                    },
                )
                assert r.status_code == 201, r.text
            assert admin.post("/api/v1/admin/meters", json={}).status_code == 401
            bad = admin.post(
                "/api/v1/admin/meters",
                headers=auth,
                json={"meter_id": "x", "public_key": "00", "owner": "y"},
            )
            assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
        yield {
            "store": store,
            "key": hub_key,
            "platform": platform,
            "server": server,
            "owners": owners,
        }
        server.stop()


@pytest.fixture
def sqlite_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A platform site (`platform_site.Site`) on SQLite and the embedded ledger."""
    from platform_site import Clock, Site

    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path / "platform", None, Clock())
    yield s
    s.close()
