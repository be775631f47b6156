"""The platform's HTTP API: the app factory. It wires one instance's parts (`deps.Api`), the
middleware (per-address limit and metrics, body limit), the one error handler (`errors.py`)
and the routers, one per area, and the pages. OpenAPI at /docs."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridtokenx.accounts import Accounts
from gridtokenx.adapters.events import Fanout, RedisRelay, as_message
from gridtokenx.adapters.ratelimit import Limiter, MemoryLimiter
from gridtokenx.api import errors, pages
from gridtokenx.api.deps import IP_LIMIT, USER_LIMIT, Api
from gridtokenx.api.fronts import PlacementServer
from gridtokenx.api.limits import BATCH_BODY, DEFAULT_BODY, BodyLimit, ClientAddress
from gridtokenx.api.routers import (
    admin,
    auth,
    certificates,
    grid,
    health,
    hubs,
    market,
    orders,
    readings,
    trades,
    wallet,
    ws,
)
from gridtokenx.kyc import KycCheck
from gridtokenx.metrics import PlatformMetrics
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

THREADS = 256  # request threads (anyio's default is 40)
ROUTERS = (
    health,
    auth,
    wallet,
    market,
    orders,
    trades,
    readings,
    certificates,
    grid,
    admin,
    hubs,
    ws,
)


def limits() -> tuple[int, int]:
    """(per user, per IP) requests a minute, read when an app is made."""
    return (
        int(os.environ.get("GTX_LIMIT_PER_USER", str(USER_LIMIT))),
        int(os.environ.get("GTX_LIMIT_PER_IP", str(IP_LIMIT))),
    )


def trusted_proxies() -> tuple[str, ...]:
    """GTX_TRUSTED_PROXIES: comma-separated addresses or networks whose X-Forwarded-For is
    believed (the reverse proxy's); empty by default, so the header is ignored."""
    text = os.environ.get("GTX_TRUSTED_PROXIES", "")
    return tuple(p.strip() for p in text.split(",") if p.strip())


def create_app(
    platform: Platform,
    admin_token: str | None = None,
    trading: Trading | None = None,
    accounts: Accounts | None = None,
    limiter: Limiter | None = None,
    redis_url: str | None = None,
    ws_queue: int = 256,
    demo_grant: int = 0,
    limits_per_minute: tuple[int, int] | None = None,
    body_limit: int = DEFAULT_BODY,
    batch_limit: int = BATCH_BODY,
    proxies: tuple[str, ...] | None = None,
    auto_approve: bool = False,
    kyc_url: str | None = None,
    fast_orders: bool = True,
) -> FastAPI:
    """`fast_orders` False: every order through the router (`orders.FastPath` off; tests
    compare the two)."""
    user_limit, ip_limit = limits_per_minute or limits()
    api = Api(
        platform,
        admin_token,
        trading,
        accounts,
        limiter or MemoryLimiter(),
        demo_grant,
        user_limit,
        ip_limit,
        Fanout(ws_queue),
        ClientAddress(trusted_proxies() if proxies is None else proxies),
        auto_approve,
        KycCheck(kyc_url) if kyc_url else None,
    )
    relay = RedisRelay(redis_url, api.fanout.dispatch) if redis_url else None
    if trading is not None:
        if relay is not None:
            trading.listeners.append(relay.publish)
        else:
            trading.listeners.append(lambda event: api.fanout.dispatch(as_message(event)))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # a placement's thread waits for its group commit (`Trading.place`): more threads
        # than anyio's 40 let a batch hold every concurrent request
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        yield
        if relay is not None:
            relay.close()

    app = FastAPI(title="GridTokenX platform", version="1", docs_url="/docs", lifespan=lifespan)
    app.state.api = api
    app.state.redis_url = redis_url  # /ready pings it
    app.state.fanout = api.fanout
    app.state.metrics = registry = CollectorRegistry()
    requests = Counter("gtx_api_requests", "API requests", ["method", "status"], registry=registry)
    latency = Histogram("gtx_api_seconds", "API latency", registry=registry)
    PlatformMetrics(platform, trading).register(registry)  # market and ledger (metrics.py)
    fast = Counter("gtx_api_fast_orders", "Orders placed by the fast path", registry=registry)
    if fast_orders:  # innermost: inside the body limit, the per-address limit, the metrics
        app.add_middleware(orders.FastPath, api=api, taken=fast)
    # what the placement socket of `--fronts` counts in (`api.fronts.PlacementServer`)
    app.state.placements = PlacementServer(api, requests, latency, fast)
    app.add_middleware(BodyLimit, limit=body_limit, larger={"/api/v1/hub/batches": batch_limit})

    app.add_middleware(PerAddress, api=api, requests=requests, latency=latency)
    errors.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    pages.install(app)
    app.state.routes = [r for m in (*ROUTERS, *pages.PAGES) for r in m.router.routes]
    return app


class PerAddress:
    """The per-address request limit of `/api/` and the request metrics: a pure ASGI
    middleware (Starlette's `BaseHTTPMiddleware` costs a task group and memory streams per
    request, about half of a trivial request's time here)."""

    def __init__(self, app: ASGIApp, api: Api, requests: Counter, latency: Histogram) -> None:
        self.app, self.api, self.requests, self.latency = app, api, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what an exception out of the app becomes

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refused = None
            if scope["path"].startswith("/api/"):
                refused = self.api.over_address_limit(self.api.client_ip(HTTPConnection(scope)))
            if refused is not None:
                await errors.error_response(refused)(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.requests.labels(scope["method"], str(status)).inc()
            self.latency.observe(time.perf_counter() - start)
