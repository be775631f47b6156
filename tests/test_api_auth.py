"""Auth abuse, each finding of issue 13 item 6 reproduced: the refresh race, an access token
alive after logout, brute force through the API and through the HTML form, a spoofed
X-Forwarded-For, and login time telling whether an email exists."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import database
from fastapi.testclient import TestClient

from gridtokenx.accounts import ACCOUNT_FAILURES, ADDRESS_FAILURES, Accounts
from gridtokenx.adapters.ratelimit import MemoryLimiter
from gridtokenx.api.app import create_app
from gridtokenx.api.limits import ClientAddress
from gridtokenx.services.site import Platform

PASSWORD = "correct horse 1"


class Clock:
    """The start of the test plus an offset the test moves (near real time: JWT expiry is
    checked against the real clock)."""

    def __init__(self) -> None:
        self.start, self.offset = time.time(), 0.0

    def __call__(self) -> float:
        return self.start + self.offset


class Site:
    def __init__(self, data: Path, url: str | None, **options: Any) -> None:
        self.clock = Clock()
        self.platform = Platform(data, url)
        self.accounts = Accounts(self.platform.books, b"a" * 32, clock=self.clock)
        self.app = create_app(
            self.platform, None, None, self.accounts, **options, auto_approve=True
        )

    def client(self, host: str = "203.0.113.7") -> TestClient:
        return TestClient(self.app, client=(host, 50000))

    def register(self, email: str) -> None:
        body = {"email": email, "password": PASSWORD, "role": "consumer"}
        assert self.client().post("/api/v1/auth/register", json=body).status_code == 201


@pytest.fixture(params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    with database(request.param, tmp_path) as url:
        s = Site(tmp_path / "platform", None if request.param == "sqlite" else url)
        yield s
        s.platform.books.dispose()


@pytest.fixture
def lite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("GTX_KEYSTORE_KEY", os.urandom(32).hex())
    monkeypatch.delenv("SOLANA_RPC_URL", raising=False)
    s = Site(tmp_path / "platform", None, limits_per_minute=(10**6, 10**6))
    yield s
    s.platform.books.dispose()


def login(c: TestClient, email: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
    return c.post("/api/v1/auth/login", json={"email": email, "password": password}, **kw)


def me(c: TestClient, access: str) -> tuple[int, str]:
    r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})
    return r.status_code, r.json().get("code", r.json().get("email"))


def test_parallel_refreshes_of_one_token_end_the_login(site: Site) -> None:
    """Found on main: two concurrent refreshes both succeeded and both new tokens worked."""
    site.register("race@example.org")
    c = site.client()
    for _ in range(4):
        tokens = login(c, "race@example.org").json()
        gate = threading.Barrier(2)
        answers: list[httpx.Response] = []

        def refresh(
            token: str = tokens["refresh_token"], gate: Any = gate, answers: Any = answers
        ) -> None:
            gate.wait()
            answers.append(c.post("/api/v1/auth/refresh", json={"refresh_token": token}))

        threads = [threading.Thread(target=refresh) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answers.sort(key=lambda r: r.status_code)
        assert [r.status_code for r in answers] == [200, 401]
        assert answers[1].json()["code"] == "refresh_token_reused"
        won = answers[0].json()
        # the reuse ended the whole login: no token of it works, the winner's included
        assert me(c, won["access_token"]) == (401, "login_revoked")
        assert me(c, tokens["access_token"]) == (401, "login_revoked")
        again = c.post("/api/v1/auth/refresh", json={"refresh_token": won["refresh_token"]})
        assert (again.status_code, again.json()["code"]) == (401, "bad_refresh_token")
    # a new login is unaffected
    assert me(c, login(c, "race@example.org").json()["access_token"]) == (200, "race@example.org")


def test_logout_ends_the_access_token_too(site: Site) -> None:
    """Found on main: an access token still worked after logout."""
    site.register("out@example.org")
    c = site.client()
    first, second = login(c, "out@example.org").json(), login(c, "out@example.org").json()
    assert me(c, first["access_token"]) == (200, "out@example.org")
    r = c.post("/api/v1/auth/logout", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 204
    assert me(c, first["access_token"]) == (401, "login_revoked")
    assert me(c, second["access_token"]) == (200, "out@example.org")  # another login
    # the pages' logout ends the session's token (the cookie held only the access token)
    page = site.client()
    assert page.post("/login", data={"email": "out@example.org", "password": PASSWORD}).is_success
    cookie = page.cookies["gtx_access"]
    assert me(c, cookie) == (200, "out@example.org")
    page.post("/logout")
    assert me(c, cookie) == (401, "login_revoked")


def test_brute_force_through_the_api_is_locked_out_for_longer_each_time(lite: Site) -> None:
    lite.register("bf@example.org")
    c = lite.client()
    for lockout_s in (60, 120, 240):
        codes = [login(c, "bf@example.org", "wrong guess!").json()["code"] for _ in range(5)]
        assert codes == ["bad_credentials"] * ACCOUNT_FAILURES
        r = login(c, "bf@example.org")  # even the right password, while locked
        assert (r.status_code, r.json()["code"]) == (429, "login_locked")
        assert int(r.headers["Retry-After"]) == lockout_s
        lite.clock.offset += lockout_s - 1
        assert login(c, "bf@example.org").status_code == 429
        lite.clock.offset += 1
    assert login(c, "bf@example.org").status_code == 200
    # a success forgets the account's failures and lockouts: the next lock is 60 s again
    for _ in range(ACCOUNT_FAILURES):
        login(c, "bf@example.org", "wrong guess!")
    assert login(c, "bf@example.org").headers["Retry-After"] == "60"


def test_brute_force_through_the_html_form_is_locked_out_too(lite: Site) -> None:
    """Found on main: the HTML login form was not limited at all."""
    lite.register("form@example.org")
    page = lite.client()
    form = {"email": "form@example.org", "password": "wrong guess!"}
    errors = [page.post("/login", data=form).url.params["error"] for _ in range(5)]
    assert errors == ["wrong email or password"] * ACCOUNT_FAILURES
    r = page.post("/login", data={**form, "password": PASSWORD})
    assert r.url.path == "/login"
    assert r.url.params["error"] == "too many failed logins: try again later"
    assert "gtx_access" not in page.cookies
    # one account, one counter: the API is locked for it as well
    assert login(lite.client(), "form@example.org").json()["code"] == "login_locked"


def test_one_address_trying_many_accounts_is_locked_out(lite: Site) -> None:
    lite.register("victim@example.org")
    attacker = lite.client("198.51.100.9")
    for k in range(ADDRESS_FAILURES):
        assert login(attacker, f"guess{k}@example.org", "wrong guess!").status_code == 401
    r = login(attacker, "victim@example.org")
    assert (r.status_code, r.json()["code"]) == (429, "login_locked")
    assert r.headers["Retry-After"] == "60"
    assert login(lite.client("198.51.100.10"), "victim@example.org").status_code == 200


def test_a_spoofed_forwarded_for_header_changes_nothing(lite: Site) -> None:
    """Found on main: X-Forwarded-For from any client was believed, bypassing the per-IP
    limit. Now it is believed only from a configured proxy."""
    lite.register("spoof@example.org")
    attacker = lite.client("198.51.100.9")
    for k in range(ADDRESS_FAILURES):
        h = {"X-Forwarded-For": f"192.0.2.{k}"}
        assert login(attacker, f"g{k}@example.org", "wrong guess!", headers=h).status_code == 401
    r = login(attacker, "spoof@example.org", headers={"X-Forwarded-For": "192.0.2.250"})
    assert r.json()["code"] == "login_locked"
    # the per-address request limit ignores the header as well
    limited = create_app(
        lite.platform,
        None,
        None,
        lite.accounts,
        limits_per_minute=(100, 3),
        auto_approve=True,
        limiter=MemoryLimiter(clock=lambda: 30.0),  # one window, whatever the time
    )
    c = TestClient(limited, client=("198.51.100.20", 1))
    codes = [
        c.get("/api/v1/me", headers={"X-Forwarded-For": f"192.0.2.{k}"}).status_code
        for k in range(4)
    ]
    assert codes == [401, 401, 401, 429]


def test_behind_a_trusted_proxy_the_forwarded_address_counts(lite: Site) -> None:
    lite.register("proxied@example.org")
    app = create_app(
        lite.platform,
        None,
        None,
        lite.accounts,
        limits_per_minute=(10**6, 10**6),
        proxies=("10.0.0.0/8",),
        auto_approve=True,
    )
    proxy = TestClient(app, client=("10.1.2.3", 1))
    for k in range(ADDRESS_FAILURES):
        h = {"X-Forwarded-For": "192.0.2.66"}
        assert login(proxy, f"p{k}@example.org", "wrong guess!", headers=h).status_code == 401
    locked = login(proxy, "proxied@example.org", headers={"X-Forwarded-For": "192.0.2.66"})
    assert locked.json()["code"] == "login_locked"
    other = login(proxy, "proxied@example.org", headers={"X-Forwarded-For": "192.0.2.67"})
    assert other.status_code == 200
    # the right-most untrusted hop is the client; what it claims to its left is ignored
    addresses = ClientAddress(["10.0.0.0/8"])
    assert addresses.of("10.1.2.3", "6.6.6.6, 192.0.2.66, 10.0.0.5") == "192.0.2.66"
    assert addresses.of("192.0.2.1", "6.6.6.6") == "192.0.2.1"  # not from the proxy
    assert addresses.of("10.1.2.3", None) == "10.1.2.3"


def test_an_unknown_email_takes_as_long_as_a_wrong_password(lite: Site) -> None:
    """Found on main: 0.2 s for a known email, 0.006 s for an unknown one. Both now verify
    one Argon2 hash; the fastest of four tries each must be of the same order."""
    lite.register("known@example.org")
    c = lite.client()

    def fastest(emails: list[str]) -> float:
        times = []
        for email in emails:
            start = time.perf_counter()
            assert login(c, email, "wrong guess!").status_code == 401
            times.append(time.perf_counter() - start)
        return min(times)

    known = fastest(["known@example.org"] * 4)
    unknown = fastest([f"nobody{k}@example.org" for k in range(4)])
    assert unknown > 0.5 * known, (unknown, known)


def test_a_remembered_token_still_expires_at_its_exp() -> None:
    """`Accounts.decode` keeps a checked token's claims (no signature check per request)
    only until its exp; a token signed with another secret is never taken from memory."""
    import time as clock

    import jwt as pyjwt

    from gridtokenx.accounts import Accounts, AuthUnauthorized, Claims

    secret = b"s" * 32
    accounts = Accounts(None, secret)  # type: ignore[arg-type]  # decode reads no database
    body = {"sub": "u-1", "role": "consumer", "fam": "f-1", "typ": "access"}
    token = pyjwt.encode({**body, "exp": int(clock.time()) + 2}, secret, algorithm="HS256")
    assert accounts.decode(token) == Claims("u-1", "consumer", "", "f-1")
    assert accounts.decode(token) == Claims("u-1", "consumer", "", "f-1")  # remembered
    forged = pyjwt.encode({**body, "exp": int(clock.time()) + 60}, b"x" * 32, algorithm="HS256")
    with pytest.raises(AuthUnauthorized) as bad:
        accounts.decode(forged)
    assert bad.value.code == "bad_token"
    clock.sleep(2.1)
    with pytest.raises(AuthUnauthorized) as late:
        accounts.decode(token)
    assert late.value.code == "token_expired"
