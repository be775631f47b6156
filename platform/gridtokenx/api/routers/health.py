"""Liveness, readiness (the books' database, Redis when configured, and the ledger answer)
and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import generate_latest
from sqlalchemy import text

from gridtokenx.api.deps import PlatformDep
from gridtokenx.api.schemas import HealthOut, ReadyOut, errors
from gridtokenx.errors import Unavailable

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
async def health() -> dict[str, str]:  # on the event loop: no worker thread for a constant
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyOut, responses=errors(503))
def ready(platform: PlatformDep, request: Request) -> dict[str, Any]:
    """Each dependency this instance needs, asked for real; a 503 `not_ready` names the
    ones that did not answer (the broker is the hub's: its own /ready checks it)."""
    checks: dict[str, str] = {}
    problems = []

    def check(name: str, probe: Any) -> None:
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure of a dependency is "not ready", with its kind
            checks[name] = "failing"
            problems.append(f"{name}: {exc.__class__.__name__}")

    def database() -> None:
        with platform.books.connect() as c:
            c.execute(text("SELECT 1"))

    check("database", database)
    redis_url = getattr(request.app.state, "redis_url", None)
    if redis_url:
        import redis

        def ping() -> None:
            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                client.ping()
            finally:
                client.close()

        check("redis", ping)
    else:
        checks["redis"] = "not configured"
    check("ledger", platform.dep.grx.supply)
    if problems:
        raise Unavailable("not_ready", "; ".join(problems))
    return {"status": "ready", "grx_mint": str(platform.dep.grx.address), "checks": checks}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> str:
    return generate_latest(request.app.state.metrics).decode()
