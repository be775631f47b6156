"""`gridtokenx bench api`: order placements over HTTP against a platform on 127.0.0.1.

Starts `gridtokenx platform run` in its own process: fresh data, the embedded ledger, and
the per-IP and per-user request limits raised (every client is on 127.0.0.1). Signs up one
household with THB per 40 orders (the 50 orders per epoch limit holds), then places
`orders` buy orders from `concurrency` client threads. Every placement is real:
validation, an escrow transfer on the ledger (fsynced), the order rows, the book. Then the
same threads send as many `GET /health` requests: `baseline_rps` shows what the client and
the HTTP stack alone reach, so that the order figures are the platform's, not the client's.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(orders: int, concurrency: int) -> dict[str, Any]:
    users = orders // 40 + 1  # the design's 50 orders per user and epoch hold
    port = _port()
    admin = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "GTX_KEYSTORE_KEY": secrets.token_hex(32),
            "GTX_ADMIN_TOKEN": admin,
            "GTX_LIMIT_PER_IP": str(10**9),
            "GTX_LIMIT_PER_USER": str(10**9),
        }
        env.pop("SOLANA_RPC_URL", None)
        log = Path(tmp) / "platform.log"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridtokenx",
                "platform",
                "run",
                "--data",
                tmp,
                "--port",
                str(port),
                "--epoch-s",
                "86400",
                "--auto-approve",  # the bench's sign-ups trade at once
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while "ready" not in log.read_text(errors="replace"):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the platform did not start: {log.read_text()[-500:]}")
                time.sleep(0.1)
            time.sleep(0.5)
            tokens = []
            with httpx.Client(base_url=base, timeout=60) as c:
                for k in range(users):
                    email = f"bench{k}@example.org"
                    user = c.post(
                        "/api/v1/auth/register", json={"email": email, "password": "bench-password"}
                    ).json()
                    c.post(
                        "/api/v1/admin/topup",
                        headers={"Authorization": f"Bearer {admin}"},
                        json={
                            "user_id": user["user_id"],
                            "micro_thb": 10**13,
                            "reference": f"b{k}",
                        },
                    )
                    tokens.append(
                        c.post(
                            "/api/v1/auth/login",
                            json={"email": email, "password": "bench-password"},
                        ).json()["access_token"]
                    )
            latencies: list[float] = []
            errors = 0
            lock = threading.Lock()
            counter = iter(range(orders))

            def worker(w: int) -> None:
                nonlocal errors
                with httpx.Client(base_url=base, timeout=60) as c:
                    while True:
                        with lock:
                            k = next(counter, None)
                        if k is None:
                            return
                        token = tokens[k % users]
                        start = time.perf_counter()
                        r = c.post(
                            "/api/v1/orders",
                            headers={"Authorization": f"Bearer {token}"},
                            json={
                                "side": "buy",
                                "quantity_wh": 100 + k % 900,
                                "price": 2_000_000 + (k % 50) * 10_000,
                            },
                        )
                        elapsed = time.perf_counter() - start
                        with lock:
                            latencies.append(elapsed)
                            errors += r.status_code != 201

            start = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - start
            baseline = _baseline(base, concurrency, orders)
        finally:
            server.terminate()
            server.wait(timeout=30)
    latencies.sort()
    return {
        "orders": orders,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "orders_per_s": round(orders / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
        "errors": errors,
        "baseline_rps": baseline,
    }


def _baseline(base: str, concurrency: int, requests: int) -> float:
    """Requests/s of a trivial endpoint (`/health`) from the same client threads against the
    same server, right after the orders: what the client and HTTP stack alone can do."""
    counter = iter(range(requests))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                c.get("/health")

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(requests / (time.perf_counter() - start), 1)
