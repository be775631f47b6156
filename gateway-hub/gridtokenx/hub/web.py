"""The hub's HTTP side: the household page, the installer API, metrics and health.

Server-rendered (Jinja2), no CDN and no build step: the page works on a phone on the local
network with no internet. A household's page and data open only with its access link
(`/meters/{id}?key=...`, remembered in a cookie) or the installer token: anyone on the
LAN can reach the hub, not everyone may see a neighbour's consumption.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridtokenx.hub import batches, feeder_web, firmware, retention, updates, views
from gridtokenx.hub.metrics import HubMetrics, IngestMetrics
from gridtokenx.hub.mqtt import MqttIngest
from gridtokenx.hub.rules import MeterStatus
from gridtokenx.hub.store import DATABASE_ERRORS, HubStore, RegistrationError
from gridtokenx.wire.reading import UINT_MAX
from gridtokenx.wire.status import Status

log = logging.getLogger("gridtokenx.hub.web")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@dataclass
class HubContext:
    store: HubStore
    hub_id: str = "hub-001"
    ingest: MqttIngest | None = None
    platform_url: str | None = None
    installer_token: str | None = None
    utc_offset_s: int = 7 * 3600  # Bangkok: "today" and times on the page are the household's
    epoch_s: int = 900  # the hub's batch epoch: batches are shown as their local times
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    link_secret: bytes | None = None  # None: the store's `household_links` secret
    archive_dir: Path | None = None  # readings retention's archive (hub/retention.py)


RECENT = 20  # readings a power figure is averaged from (at most POWER_WINDOW_S of them)
LIVE_SCRIPT = (Path(__file__).parent / "static" / "live.js").read_bytes()
LINK_DOMAIN = b"gridtokenx/household-link/v1\x00"
UPDATE_NAME = re.compile(r"[0-9a-f]{64}\.gtxu")
LINK_SECRET = "household_links"


def household_key(secret: bytes, meter_id: str) -> str:
    """The access key of one meter's household page: HMAC-SHA256 under the hub's secret."""
    return hmac.new(secret, LINK_DOMAIN + meter_id.encode(), hashlib.sha256).hexdigest()[:32]


def household_link(store: HubStore, meter_id: str) -> str:
    """The path a household opens its page with (what an installer hands over)."""
    return f"/meters/{meter_id}?key={household_key(store.secret(LINK_SECRET), meter_id)}"


def _cookie(meter_id: str) -> str:
    return f"gtx_key_{meter_id}"


class MeterIn(BaseModel):
    meter_id: str = Field(min_length=1, max_length=64)
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    rated_power_w: int = Field(default=23_000, gt=0, le=1_000_000)
    household: str | None = Field(default=None, max_length=128)


def _error(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


def create_app(ctx: HubContext) -> FastAPI:
    app = FastAPI(title="GridTokenX hub", version="1", docs_url="/docs")
    secret = ctx.link_secret or ctx.store.secret(LINK_SECRET)
    HubMetrics(ctx.store).register(ctx.registry)  # per meter: last reading, gaps (metrics.py)
    # by verdict and reason, ingest durations: the running ingest's (none without one)
    (ctx.ingest.ingestor.metrics if ctx.ingest else IngestMetrics()).register(ctx.registry)
    accepted = Gauge("gtx_hub_readings_accepted", "Accepted readings stored", registry=ctx.registry)
    rejected = Gauge(
        "gtx_hub_readings_rejected",
        "Rejected readings by reason",
        ["reason"],
        registry=ctx.registry,
    )
    lag = Gauge(
        "gtx_hub_ingest_lag_seconds", "Seconds since the last commit", registry=ctx.registry
    )
    backlog = Gauge(
        "gtx_hub_ingest_backlog", "Messages received, not yet stored", registry=ctx.registry
    )
    outbox = Gauge("gtx_hub_outbox_depth", "Batches not yet on the ledger", registry=ctx.registry)
    requests = Counter("gtx_hub_http_requests", "HTTP requests", ["path"], registry=ctx.registry)
    images = Gauge(
        "gtx_hub_firmware_meters",
        "Meters by the firmware image they report: published, cable, unknown",
        ["image"],
        registry=ctx.registry,
    )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """The database away is a 503 the client may retry; anything else is a bug, but
        still answered in the one error shape."""
        if isinstance(exc, DATABASE_ERRORS):
            return JSONResponse(
                {"code": "database_unavailable", "message": "try again shortly"}, status_code=503
            )
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return JSONResponse(
            {"code": "internal_error", "message": "internal error"}, status_code=500
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"code": "invalid_request", "message": f"{where}: {first.get('msg', 'invalid')}"},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404 and 405
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = (
            exc.detail
            if isinstance(exc.detail, dict)
            else {"code": "error", "message": str(exc.detail)}
        )
        return JSONResponse(detail, status_code=exc.status_code)

    def is_installer(authorization: str | None) -> bool:
        given = (authorization or "").removeprefix("Bearer ").encode()
        return bool(ctx.installer_token) and hmac.compare_digest(
            given, (ctx.installer_token or "").encode()
        )

    def installer(authorization: Annotated[str | None, Header()] = None) -> None:
        if not ctx.installer_token:
            raise _error(503, "installer_api_disabled", "set HUB_INSTALLER_TOKEN to enable it")
        if not is_installer(authorization):
            raise _error(401, "unauthorized", "a valid installer token is required")

    def household(
        request: Request,
        meter_id: str,
        key: str | None = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        """The household's link key (query or cookie) or the installer token; checked
        before the meter is looked up, so an outsider cannot even probe meter ids."""
        expected = household_key(secret, meter_id).encode()
        for given in (key, request.cookies.get(_cookie(meter_id))):
            if given is not None and hmac.compare_digest(given.encode(), expected):
                return
        if not is_installer(authorization):
            raise _error(
                401, "household_access_required", "open this page with the household's link"
            )

    def meter_rows() -> list[dict[str, Any]]:
        out = []
        images = firmware.fleet(ctx.store)
        for m in ctx.store.meters():
            recent = ctx.store.readings_of(m.meter_id, RECENT)
            out.append(
                {
                    "meter_id": m.meter_id,
                    "household": m.household,
                    "status": m.status.value,
                    "last": _when(recent[0]["ts"], ctx.utc_offset_s) if recent else None,
                    "power": views.live_power_w(recent),
                    "firmware": images.get(m.meter_id),
                }
            )
        return out

    @app.get("/", response_class=HTMLResponse)
    def index(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> HTMLResponse:
        """The meter list for the installer; for anyone else only how to open their page."""
        requests.labels("/").inc()
        installer_view = is_installer(authorization)
        return TEMPLATES.TemplateResponse(
            request,
            "index.html",
            {
                "meters": meter_rows() if installer_view else [],
                "published": firmware.published(ctx.store) if installer_view else [],
                "installer": installer_view,
                "hub_id": ctx.hub_id,
                "platform_url": ctx.platform_url,
            },
        )

    @app.get("/meters/{meter_id}", response_class=HTMLResponse, dependencies=[Depends(household)])
    def meter_page(request: Request, meter_id: str) -> HTMLResponse:
        requests.labels("/meters").inc()
        meter = ctx.store.meter(meter_id)
        if meter is None:
            raise _error(404, "unknown_meter", f"no meter {meter_id!r}")
        now = int(time.time())
        local_midnight = now - (now + ctx.utc_offset_s) % 86_400
        recent = ctx.store.readings_of(meter_id, 10)  # newest first
        since = local_midnight - views.QUARTER  # the quarter before: the first delta's base
        qs = views.quarters_of_buckets(ctx.store.quarter_registers(meter_id, since), local_midnight)
        device: Status | None = ctx.ingest.statuses.get(meter_id) if ctx.ingest else None
        earned_wh, chain = batches.on_chain(ctx.store, meter_id)
        page = TEMPLATES.TemplateResponse(
            request,
            "meter.html",
            {
                "hub_id": ctx.hub_id,
                "platform_url": ctx.platform_url,
                "meter": meter,
                "power": views.live_power_w(recent[:RECENT]),
                "window_s": views.POWER_WINDOW_S,
                "chart": views.bars_svg(qs, local_midnight),
                "today_import": sum(q.import_wh for q in qs),
                "today_export": sum(q.export_wh for q in qs),
                "latest": recent[0] if recent else None,
                "readings": [dict(r, time=_when(r["ts"], ctx.utc_offset_s)) for r in recent[:10]],
                "zone": _zone(ctx.utc_offset_s),
                "device": device,
                "gaps": ctx.store.gaps_of(meter_id),
                "rejected": len(ctx.store.rejections_of(meter_id)),
                "earned_wh": earned_wh,
                "chain": [
                    dict(b, time=_span(int(str(b["epoch"])), ctx.epoch_s, ctx.utc_offset_s))
                    for b in chain
                ],
            },
        )
        key = request.query_params.get("key")
        if key is not None and hmac.compare_digest(
            key.encode(), household_key(secret, meter_id).encode()
        ):  # opened with the link: remember it, so the page's own links work too
            page.set_cookie(
                _cookie(meter_id), key, max_age=365 * 86_400, httponly=True, samesite="strict"
            )
        return page

    @app.get("/static/live.js")
    def live_script() -> Response:
        """The script that keeps the pages current without a reload (no CDN, no build)."""
        return Response(
            LIVE_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "max-age=300"}
        )

    @app.get("/api/meters", dependencies=[Depends(installer)])
    def list_meters() -> list[dict[str, Any]]:
        return meter_rows()

    @app.get("/api/meters/{meter_id}/link", dependencies=[Depends(installer)])
    def link(meter_id: str) -> dict[str, str]:
        """The household's access link, for the installer to hand over."""
        if ctx.store.meter(meter_id) is None:
            raise _error(404, "unknown_meter", f"no meter {meter_id!r}")
        return {
            "meter_id": meter_id,
            "path": f"/meters/{meter_id}?key={household_key(secret, meter_id)}",
        }

    @app.get("/api/meters/{meter_id}/readings", dependencies=[Depends(household)])
    def readings(meter_id: str, limit: int = 100) -> list[dict[str, Any]]:
        if ctx.store.meter(meter_id) is None:
            raise _error(404, "unknown_meter", f"no meter {meter_id!r}")
        if not 1 <= limit <= 5000:
            raise _error(422, "invalid_limit", "limit must be 1..5000")
        return ctx.store.readings_of(meter_id, limit)

    @app.get("/api/proof/{meter_id}/{seq}", dependencies=[Depends(household)])
    def proof(meter_id: str, seq: int) -> dict[str, object]:
        if not 0 <= seq <= UINT_MAX:
            raise _error(422, "invalid_seq", f"seq must be 0..{UINT_MAX}")
        found = batches.proof(ctx.store, meter_id, seq)
        if found is None and ctx.archive_dir is not None:
            found = retention.archived_proof(ctx.store, ctx.archive_dir, meter_id, seq)
        if found is None:
            raise _error(404, "not_batched", "no such reading, or not in a batch yet")
        return found

    @app.post("/api/meters", status_code=201, dependencies=[Depends(installer)])
    def register(body: MeterIn) -> dict[str, str]:
        try:
            m = ctx.store.add_meter(
                body.meter_id, bytes.fromhex(body.public_key), body.rated_power_w, body.household
            )
        except RegistrationError as exc:
            raise _error(
                409 if exc.code == "meter_exists" else 422, exc.code, exc.message
            ) from None
        return {"meter_id": m.meter_id, "status": m.status.value}

    def _status_route(status: MeterStatus) -> Any:
        def change(meter_id: str) -> dict[str, str]:
            try:
                ctx.store.set_status(meter_id, status)
            except RegistrationError as exc:
                raise _error(404, exc.code, exc.message) from None
            return {"meter_id": meter_id, "status": status.value}

        return change

    app.post("/api/meters/{meter_id}/approve", dependencies=[Depends(installer)])(
        _status_route(MeterStatus.APPROVED)
    )
    app.post("/api/meters/{meter_id}/suspend", dependencies=[Depends(installer)])(
        _status_route(MeterStatus.SUSPENDED)
    )

    feeder_web.mount(app, ctx.store, ctx.registry, ctx.hub_id, ctx.installer_token)

    @app.get("/firmware/{name}")
    def firmware_file(name: str) -> Response:
        """A published update file, for the meters to fetch (signed: no secret in it)."""
        requests.labels("/firmware").inc()
        if not UPDATE_NAME.fullmatch(name):
            raise _error(404, "unknown_image", "no such update file")
        raw = firmware.update_file(ctx.store, name.removesuffix(".gtxu"))
        if raw is None:
            raise _error(404, "unknown_image", "no such update file")
        return Response(raw, media_type="application/octet-stream")

    @app.get("/api/firmware", dependencies=[Depends(installer)])
    def firmware_state() -> dict[str, Any]:
        """The published images (newest first), the version on offer to the meters now
        (published to the broker; None before the first), and what each meter runs."""
        head = ctx.ingest.offered if ctx.ingest is not None else None
        return {
            "published": [firmware.as_json(p) for p in firmware.published(ctx.store)],
            "offered": None if head is None else updates.Update.of_head(head).version,
            "meters": firmware.fleet(ctx.store),
        }

    @app.get("/health")
    def health() -> JSONResponse:
        """Liveness that tells the truth: 503 while ingest is stuck (database refusing the
        batch, or the worker gone), so a supervisor can see it."""
        problems = ctx.ingest.problems() if ctx.ingest is not None else []
        if problems:
            return JSONResponse({"status": "failing", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    def ready() -> JSONResponse:
        problems = []
        try:
            ctx.store.counts()
        except Exception as exc:  # the database is the hub's one hard dependency
            problems.append(f"database: {exc.__class__.__name__}")
        if ctx.ingest is not None and not ctx.ingest.connected.is_set():
            problems.append("broker: not connected")
        return JSONResponse(
            {"ready": not problems, "problems": problems}, status_code=503 if problems else 200
        )

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        counts = ctx.store.counts()
        accepted.set(counts.pop("accepted"))
        for reason, n in counts.items():
            rejected.labels(reason).set(n)
        if ctx.ingest is not None:
            lag.set(time.time() - ctx.ingest.last_commit if ctx.ingest.last_commit else 0)
            backlog.set(ctx.ingest.backlog)
        outbox.set(batches.pending(ctx.store))
        verdicts = [m["image"] for m in firmware.fleet(ctx.store).values()]
        for verdict in ("published", "cable", "unknown"):  # alert on unknown > 0
            images.labels(verdict).set(verdicts.count(verdict))
        return PlainTextResponse(
            generate_latest(ctx.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    return app


def _when(ts: int, utc_offset_s: int = 0) -> str:
    """A Unix time as the household's local date and time."""
    return datetime.fromtimestamp(ts + utc_offset_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _span(epoch: int, epoch_s: int, utc_offset_s: int) -> str:
    """A batch epoch as its local times: '2026-12-02 09:20–09:21' (seconds unless minutes)."""
    fmt = "%H:%M" if epoch_s % 60 == 0 else "%H:%M:%S"
    start = datetime.fromtimestamp(epoch * epoch_s + utc_offset_s, UTC)
    end = datetime.fromtimestamp((epoch + 1) * epoch_s + utc_offset_s, UTC)
    last = end.strftime(fmt) if end.date() == start.date() else end.strftime(f"%Y-%m-%d {fmt}")
    return f"{start.strftime(f'%Y-%m-%d {fmt}')}–{last}"


def _zone(utc_offset_s: int) -> str:
    sign = "+" if utc_offset_s >= 0 else "-"
    hours, rest = divmod(abs(utc_offset_s), 3600)
    return f"UTC{sign}{hours:02d}:{rest // 60:02d}"
