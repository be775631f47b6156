"""The composition root (gridtokenx/bootstrap.py): settings from the environment, one
instance wired from them, on SQLite and on PostgreSQL (the local server, no fakes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from databases import database
from fastapi.testclient import TestClient

from gridtokenx.adapters.election import Election
from gridtokenx.bootstrap import Settings, build
from gridtokenx.market.config import MarketConfig, Mechanism

ADMIN = "admin-" + "b" * 30


@pytest.fixture(autouse=True)
def site_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    yield


def test_settings_from_the_environment_empty_is_unset(tmp_path: Path) -> None:
    env = {"GTX_ADMIN_TOKEN": ADMIN, "REDIS_URL": "", "GTX_DEMO_ADMIN_PASSWORD": "pw-123456"}
    s = Settings.from_env(env, data=tmp_path, epoch_s=60.0)
    assert (s.admin_token, s.redis_url, s.demo_admin_password) == (ADMIN, None, "pw-123456")
    assert (s.data, s.epoch_s, s.database, s.elect) == (tmp_path, 60.0, None, False)
    assert Settings.from_env({}, data=tmp_path).admin_token is None


def test_one_instance_on_sqlite_is_its_own_sequencer(tmp_path: Path) -> None:
    settings = Settings(
        tmp_path,
        market=MarketConfig(mechanism=Mechanism.CDA, fee_bps=70),
        epoch_s=60.0,
        elect=True,  # asked for, but SQLite is one process: no election
        admin_token=ADMIN,
        demo_grant=5_000_000,
        auto_approve=True,
    )
    instance = build(settings, clock=lambda: 1_790_000_010.0)
    try:
        assert instance.election is None and instance.trading.leading
        assert instance.fee is None  # no governance decision on a new chain
        assert instance.trading.config.mechanism is Mechanism.CDA
        assert instance.trading.config.fee_bps == 70
        assert instance.trading.current_epoch() == 1_790_000_010 // 60
        # the login key is the keystore's, so a restart keeps everyone signed in
        assert instance.accounts.secret == bytes(instance.platform.keys.ensure("jwt"))[:32]
        client = TestClient(instance.app())
        user = client.post(
            "/api/v1/auth/register", json={"email": "a@example.org", "password": "pw-a-123456"}
        )
        assert user.status_code == 201, user.text
        # the demo grant (5 THB) and auto-approval reach the API through the settings
        assert user.json()["status"] == "active"
        tokens = client.post(
            "/api/v1/auth/login", json={"email": "a@example.org", "password": "pw-a-123456"}
        ).json()
        wallet = client.get(
            "/api/v1/wallet", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert (wallet.json()["thb_micro"], wallet.json()["custodial"]) == (5_000_000, True)
        users = client.get("/api/v1/admin/users", headers={"Authorization": f"Bearer {ADMIN}"})
        assert users.status_code == 200
    finally:
        instance.close()


def test_the_demo_admin_is_made_once_and_signs_in(tmp_path: Path) -> None:
    settings = Settings(tmp_path, jwt_secret=b"j" * 32, demo_admin_password="operator-pw-1")
    first = build(settings)
    first.close()
    again = build(settings)  # a restart finds the account
    try:
        assert again.accounts.secret == b"j" * 32
        tokens = again.accounts.login("admin@gridtokenx.local", "operator-pw-1")
        assert again.accounts.verify(tokens.access_token).user_id == "admin"
    finally:
        again.close()


def test_on_postgresql_instances_elect_the_sequencer(tmp_path: Path) -> None:
    with database("postgresql", tmp_path) as url:
        settings = Settings(tmp_path / "p", url, elect=True)
        one = build(settings)
        api_only = build(Settings(tmp_path / "p", url, elect=True, campaign=False))
        alone = build(Settings(tmp_path / "p", url))  # elect=False: the sequencer itself
        try:
            assert isinstance(one.election, Election) and one.election.campaign
            assert not one.trading.leading  # until it holds the lock (`platform run`'s clock)
            assert one.election.holds()
            assert isinstance(api_only.election, Election)
            assert not api_only.election.holds() and not api_only.trading.leading
            assert alone.election is None and alone.trading.leading
        finally:
            for instance in (alone, api_only, one):
                instance.close()
