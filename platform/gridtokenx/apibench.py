"""`gridtokenx bench api`: order placements over HTTP against a platform on 127.0.0.1.

Starts `gridtokenx platform run --fronts 1` (as docker-compose.yml runs it; `fronts` 0: the
one process alone) in its own process: fresh data, the embedded ledger, and
the per-IP and per-user request limits raised (every client is on 127.0.0.1). Signs up one
household with THB per 40 orders (the 50 orders per epoch limit holds), then places
`orders` buy orders over `concurrency` kept-alive connections. Every placement is real:
validation, an escrow transfer on the ledger (fsynced), the order rows, the book. Then the
same connections send as many `GET /health` requests: `baseline_rps` shows what the client and
the HTTP stack alone reach, so that the order figures are the platform's, not the client's.

`instances` > 1 (with `database`, a PostgreSQL URL): that many `platform run` processes on
one database and one data directory, the orders spread over them in turn, 30 s epochs.
After the orders the bench waits until every epoch holding one is settled, then adds
`epochs_cleared_twice` (epochs whose settlement is on the chain under more than one root,
or a part twice) and `orders_lost` (acknowledged orders without their row, or whose escrow
is still open after their epoch settled); both must be 0.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gridtokenx import heap


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    tmp: str, env: dict[str, str], name: str, database: str | None, epoch_s: float, fronts: int = 0
) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _port()
    log = Path(tmp) / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "gridtokenx",
        "platform",
        "run",
        "--data",
        str(Path(tmp) / "data"),
        "--port",
        str(port),
        "--epoch-s",
        str(epoch_s),
        "--fronts",
        str(fronts),
        "--auto-approve",  # the bench's sign-ups trade at once
    ]
    if database:
        command += ["--database", database]
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while "ready" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"the platform did not start: {log.read_text()[-500:]}")
        time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}", log


def run(
    orders: int,
    concurrency: int,
    instances: int = 1,
    database: str | None = None,
    fronts: int = 1,
) -> dict[str, Any]:
    users = orders // 40 + 1  # the design's 50 orders per user and epoch hold
    admin = secrets.token_hex(16)
    checked = instances > 1 or database is not None
    epoch_s = 30.0 if checked else 86400.0
    acknowledged: list[str] = []
    extra: dict[str, Any] = {}
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "GTX_KEYSTORE_KEY": secrets.token_hex(32),
            "GTX_ADMIN_TOKEN": admin,
            "GTX_LIMIT_PER_IP": str(10**9),
            "GTX_LIMIT_PER_USER": str(10**9),
        }
        env.pop("SOLANA_RPC_URL", None)
        try:
            bases = []
            for k in range(instances):  # the first makes the site's deployment, then the rest
                server, url, _log = _start(tmp, env, f"platform-{k}", database, epoch_s, fronts)
                servers.append(server)
                bases.append(url)
            base = bases[0]
            if database:
                deadline = time.monotonic() + 60
                while not any(
                    "market sequencer" in (Path(tmp) / f"platform-{k}.log").read_text()
                    for k in range(instances)
                ):
                    if time.monotonic() > deadline:
                        raise RuntimeError("no instance became the market sequencer")
                    time.sleep(0.1)
            time.sleep(0.5)
            tokens = _sign_up(base, admin, users)
            requests = [
                _post(
                    "/api/v1/orders",
                    tokens[k % users],
                    {
                        "side": "buy",
                        "quantity_wh": 100 + k % 900,
                        "price": 2_000_000 + (k % 50) * 10_000,
                    },
                )
                for k in range(orders)
            ]
            # the client's own collections are not the platform's latency: none meanwhile
            heap.settle()
            gc.disable()
            start = time.perf_counter()
            try:
                results = _fire(bases, requests, concurrency)
            finally:
                gc.enable()
            seconds = time.perf_counter() - start
            latencies = [r[0] for r in results]
            errors = 0
            refused: Counter[str] = Counter()
            for _elapsed, status, body in results:
                if status == 201:
                    acknowledged.append(str(json.loads(body)["order_id"]))
                else:
                    errors += 1
                    refused[f"{status} {_code(body)}"] += 1
            health = [b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"] * orders
            start = time.perf_counter()
            _fire(bases[:1], health, concurrency)
            baseline = round(orders / (time.perf_counter() - start), 1)
            if checked:
                extra = _settled_once(Path(tmp) / "data", database, acknowledged)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=60)
    latencies.sort()
    return {
        "orders": orders,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "orders_per_s": round(orders / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
        "errors": errors,
        **({"error_codes": dict(refused)} if refused else {}),
        "baseline_rps": baseline,
        **({"instances": instances} if checked else {}),
        "fronts": fronts,
        **extra,
    }


def _code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("code", "-"))
    except (ValueError, AttributeError):
        return "-"


def _sign_up(base: str, admin: str, users: int, prefix: str = "bench") -> list[str]:
    """`users` households signed up, topped up and logged in, eight at a time (each
    sign-up and login hashes a password: the setup, not what is measured)."""

    def one(k: int) -> str:
        with httpx.Client(base_url=base, timeout=120) as c:
            email = f"{prefix}{k}@example.org"
            user = c.post(
                "/api/v1/auth/register", json={"email": email, "password": "bench-password"}
            ).json()
            c.post(
                "/api/v1/admin/topup",
                headers={"Authorization": f"Bearer {admin}"},
                json={"user_id": user["user_id"], "micro_thb": 10**13, "reference": f"{prefix}{k}"},
            ).raise_for_status()
            login = c.post(
                "/api/v1/auth/login", json={"email": email, "password": "bench-password"}
            )
            return str(login.json()["access_token"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(users)))


def _post(path: str, token: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def _fire(
    bases: list[str], requests: list[bytes], concurrency: int
) -> list[tuple[float, int, bytes]]:
    """Send `requests` over `concurrency` kept-alive HTTP/1.1 connections (connection i to
    instance i mod N), each one request at a time; per request: seconds, status, body.

    A plain asyncio client (on uvloop when installed) writing prepared bytes: a thread per
    connection with a general-purpose client topped out at ~600 requests/s here, below
    what the server does, so the figures would have been the client's."""
    results: list[tuple[float, int, bytes]] = [(0.0, 0, b"")] * len(requests)
    todo = iter(range(len(requests)))
    addresses = [urlsplit(b) for b in bases]

    async def connection(i: int) -> None:
        address = addresses[i % len(addresses)]
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            for k in todo:
                start = time.perf_counter()
                writer.write(requests[k])
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                results[k] = (time.perf_counter() - start, status, body)
                if b"connection: close" in head.lower():  # the server ends it: a new one
                    writer.close()
                    reader, writer = await asyncio.open_connection(address.hostname, address.port)
        finally:
            writer.close()

    async def main() -> None:
        await asyncio.gather(*(connection(i) for i in range(concurrency)))

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return results


def _settled_once(data: Path, database: str | None, acknowledged: list[str]) -> dict[str, int]:
    """Wait until every epoch holding an order is settled; then what was cleared twice
    (on the chain) and which acknowledged orders were lost (in the books)."""
    from sqlalchemy import create_engine, select

    from gridtokenx.adapters import books
    from gridtokenx.adapters.tables import epochs, market_orders
    from gridtokenx.ledger.embedded import ChainReader

    engine = create_engine(database or f"sqlite:///{data / 'books.db'}")
    try:
        deadline = time.monotonic() + 600
        while True:
            with engine.connect() as c:
                wanted = set(c.execute(select(market_orders.c.epoch).distinct()).scalars())
                done = set(
                    c.execute(select(epochs.c.epoch).where(epochs.c.state == "settled")).scalars()
                )
            if wanted <= done:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"epochs {sorted(wanted - done)} did not settle")
            time.sleep(0.5)
        with engine.connect() as c:
            rows = set(c.execute(select(market_orders.c.order_id)).scalars())
            still_open = set(
                c.execute(
                    select(books.orders.c.order_id).where(books.orders.c.status != "closed")
                ).scalars()
            )
    finally:
        engine.dispose()
    lost = sum(1 for o in acknowledged if o not in rows or o in still_open)
    parts: Counter[str] = Counter()
    roots: dict[str, set[str]] = {}
    for entry in ChainReader(data / "chain").history():
        for text in entry.memos:
            if text.startswith("gtx1 settle "):
                _, _, epoch, root, _part = text.split(" ")
                parts[text] += 1
                roots.setdefault(epoch, set()).add(root)
    twice = {e for e, r in roots.items() if len(r) > 1}
    twice |= {t.split(" ")[2] for t, n in parts.items() if n > 1}
    return {"epochs_cleared_twice": len(twice), "orders_lost": lost}
