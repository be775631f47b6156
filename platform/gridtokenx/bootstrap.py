"""The composition root: one function, `build`, turns an instance's settings into its wired
parts (the platform's keystore, ledger and books; the market on its clock; accounts; the
sequencer election), and `Instance.app` into its HTTP app. `gridtokenx platform run`, the
growth benchmark and the tests' sites all build an instance here, so they run the same
wiring."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridtokenx.accounts import Accounts, AuthError
from gridtokenx.adapters.ratelimit import Limiter, from_env
from gridtokenx.governing import Governing
from gridtokenx.keynames import user_key
from gridtokenx.market.config import MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gridtokenx.adapters.election import Election

DEMO_ADMIN = "admin"  # the demo operator's user id (GTX_DEMO_ADMIN_PASSWORD)


@dataclass(frozen=True)
class Settings:
    """What one platform instance is made of. `from_env` adds the environment's part."""

    data: Path
    database: str | None = None  # the books' URL (default: DATA/books.db, SQLite)
    market: MarketConfig = field(default_factory=MarketConfig)
    epoch_s: float = 900.0
    grid: str | None = None  # a SimBench grid code: trades are checked on the feeder
    # on PostgreSQL, whether instances elect the market sequencer (an advisory lock);
    # False: this instance is the sequencer itself (one process, tests)
    elect: bool = False
    campaign: bool = True  # with `elect`: stand for sequencer (False: API only)
    admin_token: str | None = None  # the bootstrap admin token (GTX_ADMIN_TOKEN)
    redis_url: str | None = None  # rate limits and events shared between instances
    demo_grant: int = 0  # micro-THB given to each sign-up (demo)
    auto_approve: bool = False  # approve each sign-up at once (demo)
    kyc_url: str | None = None  # a KYC service that approves sign-ups it passes
    jwt_secret: bytes | None = None  # None: the keystore's "jwt" key
    limits_per_minute: tuple[int, int] | None = None  # None: GTX_LIMIT_PER_USER/_PER_IP
    demo_admin_password: str | None = None  # GTX_DEMO_ADMIN_PASSWORD: the demo's operator

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **given: Any) -> Settings:
        """GTX_ADMIN_TOKEN, REDIS_URL and GTX_DEMO_ADMIN_PASSWORD (empty is unset), then
        what the caller gives."""
        return cls(
            admin_token=environ.get("GTX_ADMIN_TOKEN") or None,
            redis_url=environ.get("REDIS_URL") or None,
            demo_admin_password=environ.get("GTX_DEMO_ADMIN_PASSWORD") or None,
            **given,
        )


@dataclass
class Instance:
    """One platform instance's parts, wired."""

    settings: Settings
    platform: Platform
    trading: Trading
    accounts: Accounts
    election: Election | None  # None: this instance is the sequencer (SQLite, or not elected)
    fee: int | None  # the fee of the chain's last governance decision, applied at start

    def app(self, limiter: Limiter | None = None, **options: Any) -> FastAPI:
        """The HTTP app over these parts: rate limits in Redis with `redis_url`, else in
        memory, unless a `limiter` is given; `options`: create_app's sizes."""
        from gridtokenx.api.app import create_app

        s = self.settings
        return create_app(
            self.platform,
            s.admin_token,
            self.trading,
            self.accounts,
            limiter or from_env(s.redis_url),
            redis_url=s.redis_url,
            demo_grant=s.demo_grant,
            auto_approve=s.auto_approve,
            kyc_url=s.kyc_url,
            limits_per_minute=s.limits_per_minute,
            **options,
        )

    def close(self, ledger: bool = True) -> None:
        """Stop in order: the placements taken answered (`Trading.close`), then the
        sequencer's lock, the ledger and the database's connections. `ledger` False: the
        ledger and the books stay open (an epoch's settlement may still be writing to
        them: closed, the embedded ledger would land it in memory only)."""
        self.trading.close()
        if self.election is not None:
            self.election.release()
        if ledger:
            self.platform.ledger.close()  # type: ignore[attr-defined]
            self.platform.books.dispose()


def build(settings: Settings, clock: Callable[[], float] = time.time) -> Instance:
    """Open the site in `settings.data` (KeystoreError: its key is wrong or missing) and
    wire one instance; `settings.grid` is loaded here (GridError: an unknown grid)."""
    platform = Platform(settings.data, settings.database)
    view = None
    if settings.grid:
        from gridtokenx.adapters.gridview import GridView
        from gridtokenx.sim.grid import load_simbench

        view = GridView(load_simbench(settings.grid))
    election = None
    if settings.elect and platform.books.dialect.name != "sqlite":  # any number: one sequencer
        from gridtokenx.adapters.election import Election

        election = Election(platform.books, campaign=settings.campaign)
    trading = Trading(
        platform,
        settings.market,
        settings.epoch_s,
        clock,
        grid=view,
        sequencer=election is None,
    )
    secret = settings.jwt_secret or bytes(platform.keys.ensure("jwt"))[:32]
    accounts = Accounts(platform.books, secret)
    fee = Governing(platform, trading).apply_fee()
    instance = Instance(settings, platform, trading, accounts, election, fee)
    if settings.demo_admin_password:
        _demo_admin(instance, settings.demo_admin_password)
    return instance


def _demo_admin(instance: Instance, password: str) -> None:
    """The demo's operator account, made once (a later start finds it)."""
    with suppress(AuthError):  # made at an earlier start
        instance.accounts.register(
            "admin@gridtokenx.local",
            password,
            "admin",
            instance.platform.keys.ensure(user_key(DEMO_ADMIN)).pubkey(),
            True,
            user_id=DEMO_ADMIN,
        )
