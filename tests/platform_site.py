"""A platform for tests: books on SQLite or PostgreSQL, the embedded ledger, a settable
clock, an app served over real HTTP (uvicorn on a free port) when a test needs concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from nacl.signing import SigningKey
from services import free_port
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey

from gridtokenx.bootstrap import Settings, build
from gridtokenx.ledger.oracle import hub_check
from gridtokenx.market.config import NO_BREAKER, MarketConfig
from gridtokenx.services.site import Platform
from gridtokenx.wire import batch as wire_batch
from gridtokenx.wire import cbor
from gridtokenx.wire.envelope import seal
from gridtokenx.wire.reading import READING_DOMAIN, Reading, encode

ADMIN = "admin-" + "a" * 30
EPOCH_S = 900.0
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}


def admin_h() -> dict[str, str]:
    """The admin token's header, a fresh dict each call."""
    return dict(ADMIN_H)


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0 + 10

    def __call__(self) -> float:
        return self.now


class Site:
    def __init__(
        self,
        data: Path,
        url: str | None,
        clock: Clock,
        auto_approve: bool = True,
        kyc_url: str | None = None,
        limiter: Any = None,
        limits_per_minute: tuple[int, int] | None = (100_000, 100_000),
        **market: Any,
    ) -> None:
        """`limits_per_minute` None: the defaults (GTX_LIMIT_PER_USER/_PER_IP)."""
        settings = Settings(
            data,
            url,
            MarketConfig(breaker_bps=NO_BREAKER, **market),
            EPOCH_S,
            admin_token=ADMIN,
            auto_approve=auto_approve,
            kyc_url=kyc_url,
            jwt_secret=b"k" * 32,
            limits_per_minute=limits_per_minute,
        )
        instance = build(settings, clock)  # the composition root `platform run` uses
        self.instance = instance
        self.platform, self.trading = instance.platform, instance.trading
        self.accounts = instance.accounts
        self.app = instance.app(limiter)
        self.client = TestClient(self.app)

    def close(self) -> None:
        self.instance.close()


def signup(client: TestClient | httpx.Client, email: str, role: str = "prosumer") -> dict[str, Any]:
    r = client.post(
        "/api/v1/auth/register", json={"email": email, "password": "correct horse 1", "role": role}
    )
    assert r.status_code == 201, r.text
    tokens = client.post(
        "/api/v1/auth/login", json={"email": email, "password": "correct horse 1"}
    ).json()
    return {**r.json(), **tokens, "auth": {"Authorization": f"Bearer {tokens['access_token']}"}}


class AnySite(Protocol):
    """What `fund` needs of a test's site: this module's `Site` or another test's own."""

    client: TestClient
    platform: Platform


def fund(site: AnySite, user: dict[str, Any], thb: int = 0, grx: int = 0) -> None:
    """THB by the admin top-up; GRX minted by the oracles directly (as a batch would)."""
    if thb:
        r = site.client.post(
            "/api/v1/admin/topup",
            headers=ADMIN_H,
            json={
                "user_id": user["user_id"],
                "micro_thb": thb,
                "reference": f"t-{user['user_id'][:8]}-{thb}",
            },
        )
        assert r.status_code == 200, r.text
    if grx:
        dep = site.platform.dep
        three = [
            dep.oracle(n) for n in ("oracle/platform", "oracle/grid-operator", "oracle/standby")
        ]
        dep.ledger.send(
            [
                dep.grx.mint_ix(
                    Pubkey.from_string(user["wallet"]),
                    grx,
                    dep.oracle_multisig,
                    [k.pubkey() for k in three],
                )
            ],
            three,
        )


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app on a real HTTP server in this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def hub_batch(
    hub: SigningKey,
    meter: SigningKey,
    meter_id: str,
    epoch: int,
    exports: list[int],
    imports: list[int] | None = None,
) -> tuple[Any, bytes, list[tuple[bytes, bytes]]]:
    """A hub's batch of one meter's signed readings: (header, hub signature, readings)."""
    readings = []
    for k, export in enumerate(exports):
        raw = encode(
            Reading(
                meter_id,
                epoch * 10 + k,
                1_790_000_000 + epoch * 900 + k * 300,
                imports[k] if imports else 0,
                export,
                300,
                2300,
                0,
                1000,
                5000,
            )
        )
        readings.append((raw, bytes(cbor.loads(seal(raw, READING_DOMAIN, meter))[1])))
    header = wire_batch.build("hub-1", epoch, [r for r, _ in readings])
    signature = hub.sign(wire_batch.BATCH_DOMAIN + wire_batch.encode_header(header)).signature
    return header, bytes(signature), readings


def hub_signatures(hub: SigningKey, proposals: Any, evidence: Any) -> list[bytes]:
    """What the hub's outbox does with the proposals: check each, sign it with its key."""
    key = Keypair.from_seed(bytes(hub))
    out = []
    for p in proposals:
        hub_check(Message.from_bytes(bytes(p.message)), evidence)
        out.append(bytes(key.sign_message(bytes(p.message))))
    return out


def submit(
    platform: Platform,
    hub: SigningKey,
    meter: SigningKey,
    epoch: int,
    exports: list[int],
    imports: list[int] | None = None,
) -> None:
    """A hub's batch of meter m-1 through the co-signer, as the outbox sends it."""
    from gridtokenx.ledger.oracle import Evidence

    header, signature, readings = hub_batch(hub, meter, "m-1", epoch, exports, imports)
    encoded = wire_batch.encode_header(header)
    out = platform.receive_batch("hub-1", epoch, encoded, signature, readings)
    if out.state == "done":  # everything already on the chain
        return
    evidence = Evidence(header, signature, tuple(readings))
    platform.sign_batch("hub-1", epoch, hub_signatures(hub, out.proposals, evidence))


def trade(epoch: int, k: int, buyer: str, seller: str) -> dict[str, Any]:
    """A trade row as the books store it (seeded straight into `books.trades`)."""
    return {
        "epoch": epoch,
        "trade_id": f"{epoch}-{k}",
        "buy_id": f"b{epoch}-{k}",
        "sell_id": f"s{epoch}-{k}",
        "buyer": buyer,
        "seller": seller,
        "wh": 100 + k,
        "buyer_paid": 300_000,
        "seller_net": 297_000,
        "fee": 3_000,
        "wheeling": 0,
        "price": 3_000_000,
        "wheeling_rate": 0,
        "fee_bps": 100,
    }
