"""The lists that grew with history, paged: a holder's certificates (from the certificate
index, never a pass over the chain) and the governance proposals; exact pages, a walk that
sees every item once, a bad cursor's one error, a page's cost independent of history."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from platform_site import ADMIN, Clock, admin_h, signup
from solders.pubkey import Pubkey
from sqlalchemy import create_engine, event, inspect

from gridtokenx.accounts import Accounts
from gridtokenx.adapters import books
from gridtokenx.api.app import create_app
from gridtokenx.governance import Proposal, Proposals
from gridtokenx.keynames import user_key
from gridtokenx.ledger.certificates import Registry
from gridtokenx.market.config import MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    platform = Platform(tmp_path)
    accounts = Accounts(platform.books, b"k" * 32)
    client = TestClient(
        create_app(
            platform,
            ADMIN,
            Trading(platform, MarketConfig(), 900.0, Clock()),
            accounts,
            auto_approve=True,
        )
    )
    yield platform, client, accounts


def issue(platform: Platform, owner: str, n: int, start: int = 0) -> list[str]:
    """n certificates of meter m-1 to `owner`, oldest first; their mints."""
    return [
        str(
            platform.certificates.issue(
                "m-1", Pubkey.from_string(owner), "2026-11", 10 * i, 10 * i + 10
            ).mint
        )
        for i in range(start, start + n)
    ]


def walk(client: TestClient, url: str, headers: dict[str, str]) -> list[list[Any]]:
    """Every page of a list, following Next-Cursor until it is absent."""
    pages, cursor = [], None
    while True:
        r = client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body if isinstance(body, list) else body["proposals"])
        cursor = r.headers.get("Next-Cursor")
        if isinstance(body, dict):
            assert body["next_cursor"] == cursor
        if cursor is None:
            return pages


def chain_view(platform: Platform, wallet: str) -> list[tuple[str, str, str]]:
    """What the chain holds for a wallet, by the registry's own pass over history."""
    return sorted(
        (str(c.mint), c.status, str(c.holder))
        for c in platform.certificates.all()
        if str(c.holder) == wallet
    )


def test_certificates_page_newest_first_and_exact(site: Any) -> None:
    platform, client, _ = site
    alice, bob = signup(client, "alice@x.org"), signup(client, "bob@x.org")
    mints = issue(platform, alice["wallet"], 5)
    pages = walk(client, "/api/v1/certificates?limit=2", alice["auth"])
    assert [[c["mint"] for c in p] for p in pages] == [
        [mints[4], mints[3]],
        [mints[2], mints[1]],
        [mints[0]],
    ]
    assert pages[0][0] == {
        "mint": mints[4],
        "meter_id": "m-1",
        "period": "2026-11",
        "wh": 10,
        "from_wh": 40,
        "to_wh": 50,
        "source": "solar",
        "status": "pending",
        "holder": alice["wallet"],
    }
    # every transition, each reflected exactly as the chain has it
    registry: Registry = platform.certificates
    for m in mints[:4]:
        registry.validate(Pubkey.from_string(m))
    alice_key = platform.keys.get(platform.keys.name_of(alice["wallet"]))
    registry.transfer(Pubkey.from_string(mints[1]), alice_key, Pubkey.from_string(bob["wallet"]))
    registry.retire(Pubkey.from_string(mints[2]), alice_key, "Alice")
    registry.revoke(Pubkey.from_string(mints[3]), "bad meter")
    for who in (alice, bob):
        listed = [c for p in walk(client, "/api/v1/certificates?limit=1", who["auth"]) for c in p]
        assert len({c["mint"] for c in listed}) == len(listed)  # each once
        assert sorted((c["mint"], c["status"], c["holder"]) for c in listed) == chain_view(
            platform, who["wallet"]
        )
    statuses = {
        c["mint"]: c["status"]
        for c in client.get("/api/v1/certificates", headers=alice["auth"]).json()
    }
    assert statuses == {
        mints[0]: "active",
        mints[2]: "retired",
        mints[3]: "revoked",
        mints[4]: "pending",
    }
    assert [c["mint"] for c in client.get("/api/v1/certificates", headers=bob["auth"]).json()] == [
        mints[1]
    ]


@pytest.mark.parametrize("cursor", ["abc", "1.", "12.0OIl" + "1" * 30, "9" * 19 + ".x"])
def test_bad_cursor_is_the_one_error(site: Any, cursor: str) -> None:
    _, client, _ = site
    alice = signup(client, "alice@x.org")
    for url, headers in (
        ("/api/v1/certificates", alice["auth"]),
        ("/api/v1/admin/governance", admin_h()),
    ):
        r = client.get(url, params={"cursor": cursor}, headers=headers)
        assert r.status_code == 422, r.text
        assert set(r.json()) == {"code", "message"}


def count_statements(platform: Platform) -> list[str]:
    seen: list[str] = []
    event.listen(platform.books, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_certificate_page_costs_its_page_not_the_history(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, client, _ = site
    alice, bob = signup(client, "alice@x.org"), signup(client, "bob@x.org")

    def never() -> None:
        raise AssertionError("the list must not read the whole registry")

    issue(platform, alice["wallet"], 3)
    monkeypatch.setattr(Registry, "all", lambda self: never())
    client.get("/api/v1/certificates", headers=alice["auth"])  # the index catches up
    seen = count_statements(platform)
    first = client.get("/api/v1/certificates?limit=2", headers=alice["auth"])
    small = len(seen)
    monkeypatch.undo()  # issuing reads the registry back
    issue(platform, bob["wallet"], 6, start=3)
    monkeypatch.setattr(Registry, "all", lambda self: never())
    client.get("/api/v1/certificates", headers=alice["auth"])
    seen.clear()
    again = client.get("/api/v1/certificates?limit=2", headers=alice["auth"])
    assert len(seen) == small  # the same statements, whatever was issued since
    assert first.json() == again.json()
    assert first.headers["Next-Cursor"] == again.headers["Next-Cursor"]


def test_governance_pages_newest_first(site: Any) -> None:
    platform, client, _ = site
    store = Proposals(platform.data / "governance.json")
    for n in range(1, 6):
        store.put(Proposal(n, "pause", {}, "governance", [], "bWVzc2FnZQ=="))
    pages = walk(client, "/api/v1/admin/governance?limit=2", admin_h())
    assert [[p["id"] for p in page] for page in pages] == [[5, 4], [3, 2], [1]]
    whole = client.get("/api/v1/admin/governance", headers=admin_h())
    assert [p["id"] for p in whole.json()["proposals"]] == [5, 4, 3, 2, 1]
    assert "Next-Cursor" not in whole.headers and whole.json()["next_cursor"] is None


def test_migration_0011_adds_and_drops_the_certificate_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(books.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0011_certificates")
        assert "ledger_certificates" in inspect(connection).get_table_names()
        command.downgrade(config, "0010_lists")
        assert "ledger_certificates" not in inspect(connection).get_table_names()


def test_the_admin_page_shows_the_users_a_page_at_a_time(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _platform, client, _accounts = site
    monkeypatch.setattr("gridtokenx.api.pages.admin.USERS_PER_PAGE", 2)
    for n in range(3):
        signup(client, f"u{n}@x.org")
    operator_signed_in(site)
    first = client.get("/admin").text
    link = re.search(r'href="/admin\?users_cursor=([^"#]+)#users"', first)
    assert link is not None
    second = client.get("/admin", params={"users_cursor": link.group(1)}).text
    assert "users_cursor=" not in second
    pages = [emails(first), emails(second)]
    assert [len(p) for p in pages] == [2, 2]
    everyone = {"op@example.org", "u0@x.org", "u1@x.org", "u2@x.org"}
    assert sorted(pages[0] + pages[1]) == sorted(everyone)  # each user once
    bad = client.get("/admin", params={"users_cursor": "nope"})
    assert bad.status_code == 422 and set(bad.json()) == {"code", "message"}


def operator_signed_in(site: Any) -> Pubkey:
    """An operator `op@example.org` made and signed in to the pages; its wallet."""
    platform, client, accounts = site
    wallet = platform.keys.ensure(user_key("op")).pubkey()
    accounts.register("op@example.org", "correct horse 1", "admin", wallet, user_id="op")
    r = client.post("/login", data={"email": "op@example.org", "password": "correct horse 1"})
    assert r.status_code == 200
    return wallet


def emails(html: str) -> list[str]:
    """The emails in the /admin page's users table."""
    table = html[html.index('<table id="users">') :]
    return re.findall(r"<tr><td>([^<]+@[^<]+)</td>", table[: table.index("</table>")])


def test_the_admin_page_shows_hubs_and_meters_a_page_at_a_time(
    site: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, client, _accounts = site
    monkeypatch.setattr("gridtokenx.api.pages.admin.REGISTRY_PER_PAGE", 2)
    wallet = operator_signed_in(site)
    for n in range(3):
        platform.register_hub(f"hub-{n}", bytes([n + 1]) * 32, "t" * 30)
        platform.register_meter(f"m-{n}", bytes([n + 1]) * 32, wallet)
    first = client.get("/admin").text
    assert (ids(first, "hubs"), ids(first, "meters")) == (["hub-0", "hub-1"], ["m-0", "m-1"])
    assert 'href="/admin?hubs_after=hub-1#hubs"' in first
    assert 'href="/admin?meters_after=m-1#meters"' in first
    hubs = client.get("/admin", params={"hubs_after": "hub-1"}).text
    assert ids(hubs, "hubs") == ["hub-2"] and "hubs_after=" not in hubs
    meters = client.get("/admin", params={"meters_after": "m-1"}).text
    assert ids(meters, "meters") == ["m-2"] and "meters_after=" not in meters
    bad = client.get("/admin", params={"meters_after": "m 1;--"})
    assert bad.status_code == 422 and set(bad.json()) == {"code", "message"}


def ids(html: str, table: str) -> list[str]:
    """The first column of the /admin page's hubs or meters table."""
    rows = html[html.index(f'<table id="{table}">') :]
    return re.findall(r"<tr><td>([^<]+)</td>", rows[: rows.index("</table>")])
