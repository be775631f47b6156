"""The platform's HTTP API: a thin adapter over the services (`service`, `trading`,
`accounts`). Errors are JSON `{"code": ..., "message": ...}` with a stable code; bad input
is 4xx, never a 500. OpenAPI at /docs."""

import asyncio
import base64
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import (
    Depends,
    FastAPI,
    Header,
    Query,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi import (
    Path as PathParam,
)
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from solders.pubkey import Pubkey
from sqlalchemy import insert, select

from gridtokenx import auditlog
from gridtokenx.accounts import SELF_SERVICE_ROLES, Accounts, AuthError, Claims
from gridtokenx.api import errors
from gridtokenx.api.limits import BATCH_BODY, DEFAULT_BODY, BodyLimit
from gridtokenx.errors import RateLimited
from gridtokenx.events import Fanout, RedisRelay, as_message
from gridtokenx.ratelimit import Limiter, MemoryLimiter
from gridtokenx.service import Outcome, Platform, ServiceError
from gridtokenx.tables import idempotency, users
from gridtokenx.trading import Trading

HEX = r"^([0-9a-fA-F]{2})*$"
# design defaults, per minute; GTX_LIMIT_PER_USER / GTX_LIMIT_PER_IP change them (the API
# benchmark raises them: all its clients share one address)
EPOCH_MAX = 2**62  # epochs and other integers fit a signed 64-bit column


def limits() -> tuple[int, int]:
    """(per user, per IP) requests a minute, read when an app is made."""
    return (
        int(os.environ.get("GTX_LIMIT_PER_USER", "100")),
        int(os.environ.get("GTX_LIMIT_PER_IP", "300")),
    )


class HubIn(BaseModel):
    hub_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    token: str = Field(min_length=24, max_length=200)


class UserIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._ -]{1,64}$")


class MeterIn(BaseModel):
    meter_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    owner: str = Field(min_length=32, max_length=44, description="the owner's wallet (base58)")


class BatchIn(BaseModel):
    epoch: int = Field(strict=True, ge=0)
    header: str = Field(pattern=HEX, max_length=2_000_000)
    hub_signature: str = Field(pattern=r"^[0-9a-fA-F]{128}$")
    readings: list[tuple[str, str]] = Field(max_length=500_000)


class SignaturesIn(BaseModel):
    signatures: list[str] = Field(max_length=10_000)


class RegisterIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$")
    password: str = Field(min_length=10, max_length=200)
    role: str = Field(default="consumer", pattern="^(consumer|prosumer)$")
    wallet: str | None = Field(
        default=None,
        min_length=32,
        max_length=44,
        description="an external wallet instead of a custodial one",
    )


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class WalletLoginIn(BaseModel):
    wallet: str = Field(min_length=32, max_length=44)
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    signature: str = Field(min_length=80, max_length=100, description="base58 Ed25519 signature")


class OrderIn(BaseModel):
    side: str = Field(pattern="^(buy|sell)$")
    quantity_wh: int = Field(strict=True, gt=0, le=10**9)
    price: int = Field(strict=True, gt=0, le=10**12, description="micro-THB per kWh")
    zone: str = Field(default="default", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    tif: str = Field(default="GFE", pattern="^(GFE|IOC|FOK)$")


class TopUpIn(BaseModel):
    user_id: str = Field(max_length=36)
    micro_thb: int = Field(strict=True, gt=0, le=10**15)
    reference: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")


class CertifyIn(BaseModel):
    meter_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    period: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,32}$")


class CertTransferIn(BaseModel):
    to_wallet: str = Field(min_length=32, max_length=44)


class RetireIn(BaseModel):
    beneficiary: str = Field(min_length=1, max_length=200)


class RevokeIn(BaseModel):
    reason: str = Field(pattern=r"^[A-Za-z0-9 ._,:-]{1,200}$")


class ParametersIn(BaseModel):
    fee_bps: int | None = Field(strict=True, default=None, ge=0, le=10_000)
    min_price: int | None = Field(strict=True, default=None, gt=0, le=10**12)
    max_price: int | None = Field(strict=True, default=None, gt=0, le=10**12)
    max_quantity_wh: int | None = Field(strict=True, default=None, gt=0, le=10**9)


class HaltIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


@dataclass
class Api:
    platform: Platform
    admin_token: str | None = None
    trading: Trading | None = None
    accounts: Accounts | None = None
    limiter: Limiter = field(default_factory=MemoryLimiter)
    demo_grant: int = 0  # micro-THB given to each new sign-up (demo only)

    def set_user_status(self, user_id: str, action: str, actor: str) -> str:
        """Suspend (freeze its GRX, revoke its logins) or approve (thaw) a user; audited."""
        if self.accounts is None:
            raise ServiceError(503, "no_accounts", "user accounts are not enabled here")
        status = "suspended" if action == "suspend" else "active"
        self.accounts.set_status(user_id, status)
        wallet = Pubkey.from_string(str((self.accounts.user(user_id) or {})["wallet"]))
        with self.platform.lock:
            if action == "suspend":
                self.platform.dep.suspend(wallet)
            else:
                self.platform.dep.open_wallet(wallet)
        auditlog.append(self.platform.books, actor, f"admin.user_{action}", {"user_id": user_id})
        return status

    def welcome(self, user_id: str, wallet: Pubkey) -> None:
        """Open the new user's wallet; in a demo, give it THB to trade with."""
        with self.platform.lock:
            self.platform.dep.open_wallet(wallet)
            if self.demo_grant > 0:
                self.platform.dep.top_up(wallet, self.demo_grant, f"demo-grant-{user_id}")


def _outcome(out: Outcome) -> dict[str, Any]:
    return {
        "state": out.state,
        "messages": [base64.b64encode(bytes(p.message)).decode() for p in out.proposals],
        "memos": [p.memo for p in out.proposals],
        "transactions": list(out.transactions),
    }


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


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
) -> FastAPI:
    user_limit, ip_limit = limits_per_minute or limits()
    api = Api(platform, admin_token, trading, accounts, limiter or MemoryLimiter(), demo_grant)
    fanout = Fanout(ws_queue)
    relay = RedisRelay(redis_url, fanout.dispatch) if redis_url else None
    if trading is not None:
        if relay is not None:
            trading.listeners.append(relay.publish)
        else:
            trading.listeners.append(lambda event: fanout.dispatch(as_message(event)))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if relay is not None:
            relay.close()

    app = FastAPI(title="GridTokenX platform", version="1", docs_url="/docs", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=body_limit, larger={"/api/v1/hub/batches": batch_limit})
    app.state.api = api
    app.state.fanout = fanout
    registry = CollectorRegistry()
    requests = Counter("gtx_api_requests", "API requests", ["method", "status"], registry=registry)
    latency = Histogram("gtx_api_seconds", "API latency", registry=registry)

    @app.middleware("http")
    async def per_ip(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        ip = request.client.host if request.client else "-"
        wait = api.limiter.hit(f"ip:{ip}", ip_limit) if request.url.path.startswith("/api/") else 0
        if wait:
            response: Response = errors.error_response(
                RateLimited("rate_limited", "too many requests from this address", wait)
            )
        else:
            response = await call_next(request)
        requests.labels(request.method, str(response.status_code)).inc()
        latency.observe(time.perf_counter() - start)
        return response

    errors.install(app)

    # -- who is calling ------------------------------------------------------------------------
    def bearer(authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise ServiceError(401, "no_token", "Authorization: Bearer <token> is required")
        return authorization.removeprefix("Bearer ")

    def need_accounts() -> Accounts:
        if api.accounts is None:
            raise ServiceError(503, "no_accounts", "user accounts are not enabled here")
        return api.accounts

    def need_trading() -> Trading:
        if api.trading is None:
            raise ServiceError(503, "no_market", "the market is not enabled here")
        return api.trading

    def user(authorization: Annotated[str | None, Header()] = None) -> Claims:
        claims = need_accounts().verify(bearer(authorization))
        wait = api.limiter.hit(f"user:{claims.user_id}", user_limit)
        if wait:
            raise RateLimited("rate_limited", f"{user_limit} requests a minute", wait)
        return claims

    def admin(authorization: Annotated[str | None, Header()] = None) -> str:
        token = bearer(authorization)
        if api.admin_token is not None and hmac.compare_digest(token, api.admin_token):
            return "admin-token"
        if api.accounts is not None and token.count(".") == 2:
            claims = api.accounts.verify(token)
            if claims.role == "admin":
                return claims.user_id
        raise ServiceError(403, "not_admin", "an admin is required")

    def hub(authorization: Annotated[str | None, Header()] = None) -> str:
        return platform.hub_of_token(bearer(authorization))

    def unhex(text: str, what: str) -> bytes:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ServiceError(422, "invalid_request", f"{what} is not hex") from None

    def pubkey(text: str, what: str) -> Pubkey:
        try:
            return Pubkey.from_string(text)
        except ValueError:
            raise ServiceError(
                422, "invalid_request", f"{what} is not a base58 public key"
            ) from None

    # -- service ------------------------------------------------------------------------------
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict[str, Any]:
        platform.dep.grx.supply()  # the ledger answers
        return {"status": "ready", "grx_mint": str(platform.dep.grx.address)}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return generate_latest(registry).decode()

    # -- auth -----------------------------------------------------------------------------------
    @app.post("/api/v1/auth/register", status_code=201)
    def register(body: RegisterIn, request: Request) -> dict[str, Any]:
        accounts = need_accounts()
        if body.role not in SELF_SERVICE_ROLES:
            raise ServiceError(422, "bad_role", "sign up as consumer or prosumer")
        user_id = str(uuid.uuid4())
        if body.wallet is None:
            wallet, custodial = platform.keys.ensure(f"user/{user_id}").pubkey(), True
        else:
            wallet, custodial = pubkey(body.wallet, "wallet"), False
        accounts.register(body.email, body.password, body.role, wallet, custodial, user_id=user_id)
        api.welcome(user_id, wallet)
        auditlog.append(platform.books, user_id, "auth.register", {"role": body.role})
        return {"user_id": user_id, "wallet": str(wallet), "custodial": custodial}

    @app.post("/api/v1/auth/login")
    def login(body: LoginIn, request: Request) -> dict[str, Any]:
        try:
            tokens = need_accounts().login(body.email, body.password)
        except AuthError:
            auditlog.append(
                platform.books,
                body.email[:64],
                "auth.login_failed",
                {"ip": request.client.host if request.client else "-"},
            )
            raise
        auditlog.append(platform.books, body.email[:64], "auth.login", {})
        return {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "token_type": "bearer",
            "expires_in": tokens.expires_in,
        }

    @app.post("/api/v1/auth/refresh")
    def refresh(body: RefreshIn) -> dict[str, Any]:
        tokens = need_accounts().refresh(body.refresh_token)
        return {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "token_type": "bearer",
            "expires_in": tokens.expires_in,
        }

    @app.post("/api/v1/auth/logout", status_code=204)
    def logout(body: RefreshIn) -> Response:
        need_accounts().logout(body.refresh_token)
        return Response(status_code=204)

    @app.get("/api/v1/auth/nonce")
    def nonce(wallet: Annotated[str, Query(min_length=32, max_length=44)]) -> dict[str, str]:
        n = need_accounts().nonce(wallet)
        return {"nonce": n, "message": Accounts.nonce_message(n).decode()}

    @app.post("/api/v1/auth/wallet")
    def wallet_login(body: WalletLoginIn) -> dict[str, Any]:
        from solders.signature import Signature

        try:
            signature = bytes(Signature.from_string(body.signature))
        except ValueError:
            raise ServiceError(422, "invalid_request", "signature is not base58") from None
        tokens = need_accounts().wallet_login(body.wallet, body.nonce, signature)
        return {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "token_type": "bearer",
            "expires_in": tokens.expires_in,
        }

    @app.get("/api/v1/me")
    def me(claims: Annotated[Claims, Depends(user)]) -> dict[str, Any]:
        found = need_accounts().user(claims.user_id) or {}
        return {k: found[k] for k in ("user_id", "email", "role", "wallet", "custodial", "status")}

    # -- wallet ---------------------------------------------------------------------------------
    @app.get("/api/v1/wallet")
    def wallet(claims: Annotated[Claims, Depends(user)]) -> dict[str, Any]:
        owner = pubkey(claims.wallet, "wallet")
        dep = platform.dep
        accounts = {str(dep.grx.account_of(owner)), str(dep.thb.account_of(owner)), str(owner)}
        txs = [
            {"signature": e.signature, "memos": list(e.memos)}
            for e in platform.ledger.history()[-2000:]
            if accounts & {str(k) for k in e.tx.message.account_keys}
        ][-50:]
        return {
            "wallet": str(owner),
            "grx_wh": dep.grx.balance(owner),
            "thb_micro": dep.thb.balance(owner),
            "frozen": dep.grx.is_frozen(owner),
            "transactions": list(reversed(txs)),
        }

    # -- market ---------------------------------------------------------------------------------
    @app.get("/api/v1/market/epochs/current")
    def current_epoch() -> dict[str, Any]:
        t = need_trading()
        epoch = t.market.epoch
        ends = t.ends_at(epoch)
        return {
            "epoch": epoch,
            "ends_at": ends,
            "seconds_left": max(0.0, round(ends - t.clock(), 3)),
            "mechanism": t.config.mechanism.value,
            "halted": t.market.halted,
        }

    @app.get("/api/v1/market/epochs")
    def list_epochs(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return need_trading().recent_epochs(limit)

    @app.get("/api/v1/market/epochs/{epoch}")
    def one_epoch(epoch: Annotated[int, PathParam(ge=0, le=EPOCH_MAX)]) -> dict[str, Any]:
        found = need_trading().epoch_row(epoch)
        if found is None:
            raise ServiceError(404, "no_epoch", f"epoch {epoch} has not been cleared")
        return found

    @app.get("/api/v1/market/book")
    def book() -> dict[str, Any]:
        t = need_trading()
        with t.lock:
            return {"epoch": t.market.epoch, "depth": t.market.depth()}

    @app.get("/api/v1/market/candles")
    def candles(limit: Annotated[int, Query(ge=1, le=500)] = 96) -> list[dict[str, Any]]:
        rows = [r for r in need_trading().recent_epochs(limit) if r["clearing_price"] is not None]
        return [
            {"epoch": r["epoch"], "price": r["clearing_price"], "volume_wh": r["volume_wh"]}
            for r in reversed(rows)
        ]

    # -- certificates -----------------------------------------------------------------------------
    def cert_json(c: Any) -> dict[str, Any]:
        return {
            "mint": str(c.mint),
            "meter_id": c.meter_id,
            "period": c.period,
            "wh": c.wh,
            "from_wh": c.from_wh,
            "to_wh": c.to_wh,
            "source": c.source,
            "status": c.status,
            "holder": str(c.holder) if c.holder else None,
        }

    def certificate_action(action: Any) -> dict[str, Any]:
        from gridtokenx.ledger.certificates import CertificateError

        try:
            with platform.lock:
                return cert_json(action())
        except CertificateError as err:
            status = 404 if err.code == "unknown_certificate" else 409
            raise ServiceError(status, err.code, str(err)) from None

    def custodial_key(claims: Claims) -> Any:
        name = f"user/{claims.user_id}"
        if name not in platform.keys:
            raise ServiceError(409, "external_wallet", "sign with your wallet: not custodial")
        return platform.keys.get(name)

    @app.get("/api/v1/certificates")
    def my_certificates(claims: Annotated[Claims, Depends(user)]) -> list[dict[str, Any]]:
        return [cert_json(c) for c in platform.certificates.all() if str(c.holder) == claims.wallet]

    @app.post("/api/v1/certificates/{mint}/transfer")
    def transfer_certificate(
        mint: str, body: CertTransferIn, claims: Annotated[Claims, Depends(user)]
    ) -> dict[str, Any]:
        key, to = custodial_key(claims), pubkey(body.to_wallet, "to_wallet")
        return certificate_action(
            lambda: platform.certificates.transfer(pubkey(mint, "mint"), key, to)
        )

    @app.post("/api/v1/certificates/{mint}/retire")
    def retire_certificate(
        mint: str, body: RetireIn, claims: Annotated[Claims, Depends(user)]
    ) -> dict[str, Any]:
        key = custodial_key(claims)
        return certificate_action(
            lambda: platform.certificates.retire(pubkey(mint, "mint"), key, body.beneficiary)
        )

    @app.post("/api/v1/admin/certificates", status_code=201)
    def issue_certificate(body: CertifyIn, actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        out = cert_json(platform.certify(body.meter_id, body.period))
        auditlog.append(platform.books, actor, "admin.certificate_issue", {"mint": out["mint"]})
        return out

    @app.post("/api/v1/admin/certificates/{mint}/validate")
    def validate_certificate(mint: str, actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        auditlog.append(platform.books, actor, "admin.certificate_validate", {"mint": mint})
        return certificate_action(lambda: platform.certificates.validate(pubkey(mint, "mint")))

    @app.post("/api/v1/admin/certificates/{mint}/revoke")
    def revoke_certificate(
        mint: str, body: RevokeIn, actor: Annotated[str, Depends(admin)]
    ) -> dict[str, Any]:
        auditlog.append(platform.books, actor, "admin.certificate_revoke", {"mint": mint})
        return certificate_action(
            lambda: platform.certificates.revoke(pubkey(mint, "mint"), body.reason)
        )

    # -- grid -----------------------------------------------------------------------------------
    def need_grid() -> Any:
        t = need_trading()
        if t.grid is None:
            raise ServiceError(404, "no_grid", "no grid model is configured (platform run --grid)")
        return t.grid

    @app.get("/api/v1/grid/topology")
    def grid_topology() -> dict[str, Any]:
        return need_grid().topology()  # type: ignore[no-any-return]

    @app.get("/api/v1/grid/state")
    def grid_state() -> dict[str, Any]:
        view = need_grid()
        with view.lock:
            return {k: v for k, v in view.state.items()} or {"epoch": None}

    @app.get("/api/v1/grid/curtailments")
    def grid_curtailments(limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
        view = need_grid()
        with view.lock:
            return list(reversed(view.curtailments[-limit:]))

    # -- orders ---------------------------------------------------------------------------------
    @app.post("/api/v1/orders", status_code=201)
    def place(
        body: OrderIn,
        claims: Annotated[Claims, Depends(user)],
        idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    ) -> JSONResponse:
        t = need_trading()
        if idempotency_key:
            with platform.books.connect() as c:
                seen = c.execute(
                    select(idempotency).where(
                        idempotency.c.user_id == claims.user_id,
                        idempotency.c.key == idempotency_key,
                    )
                ).first()
            if seen is not None:
                return JSONResponse(json.loads(seen.body), status_code=seen.status)
        if claims.role not in ("consumer", "prosumer", "admin"):
            raise ServiceError(403, "wrong_role", "only households trade")
        row = t.place(claims.user_id, body.side, body.quantity_wh, body.price, body.zone, body.tif)
        if idempotency_key:
            with platform.books.begin() as c:
                c.execute(
                    insert(idempotency).values(
                        user_id=claims.user_id,
                        key=idempotency_key,
                        status=201,
                        body=json.dumps(row),
                    )
                )
        return JSONResponse(row, status_code=201)

    @app.delete("/api/v1/orders/{order_id}")
    def cancel(order_id: str, claims: Annotated[Claims, Depends(user)]) -> dict[str, Any]:
        return need_trading().cancel(claims.user_id, order_id)

    @app.get("/api/v1/orders")
    def my_orders(
        claims: Annotated[Claims, Depends(user)], limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> list[dict[str, Any]]:
        return need_trading().orders_of(claims.user_id, limit)

    # -- admin ------------------------------------------------------------------------------------
    @app.post("/api/v1/admin/hubs", status_code=201)
    def add_hub(body: HubIn, actor: Annotated[str, Depends(admin)]) -> dict[str, str]:
        platform.register_hub(body.hub_id, bytes.fromhex(body.public_key), body.token)
        auditlog.append(platform.books, actor, "admin.hub_add", {"hub_id": body.hub_id})
        return {"hub_id": body.hub_id}

    @app.post("/api/v1/admin/users", status_code=201)
    def add_user(body: UserIn, actor: Annotated[str, Depends(admin)]) -> dict[str, str]:
        return {"name": body.name, "wallet": str(platform.register_user(body.name))}

    @app.post("/api/v1/admin/meters", status_code=201)
    def add_meter(body: MeterIn, actor: Annotated[str, Depends(admin)]) -> dict[str, str]:
        owner = pubkey(body.owner, "owner")
        platform.register_meter(body.meter_id, bytes.fromhex(body.public_key), owner)
        auditlog.append(platform.books, actor, "admin.meter_add", {"meter_id": body.meter_id})
        return {"meter_id": body.meter_id}

    @app.post("/api/v1/admin/users/{user_id}/suspend")
    def suspend(user_id: str, actor: Annotated[str, Depends(admin)]) -> dict[str, str]:
        return {"user_id": user_id, "status": api.set_user_status(user_id, "suspend", actor)}

    def set_status(kind: str, key: str, action: str, actor: str) -> dict[str, str]:
        if action not in ("suspend", "approve"):
            raise ServiceError(404, "not_found", f"{action}: suspend or approve")
        status = "suspended" if action == "suspend" else "active"
        platform.set_status(kind, key, status)
        auditlog.append(platform.books, actor, f"admin.{kind}_{action}", {"id": key})
        return {"id": key, "status": status}

    @app.post("/api/v1/admin/hubs/{hub_id}/{action}")
    def hub_status(
        hub_id: str, action: str, actor: Annotated[str, Depends(admin)]
    ) -> dict[str, str]:
        return set_status("hub", hub_id, action, actor)

    @app.post("/api/v1/admin/meters/{meter_id}/{action}")
    def meter_status(
        meter_id: str, action: str, actor: Annotated[str, Depends(admin)]
    ) -> dict[str, str]:
        return set_status("meter", meter_id, action, actor)

    @app.post("/api/v1/admin/users/{user_id}/approve")
    def approve(user_id: str, actor: Annotated[str, Depends(admin)]) -> dict[str, str]:
        return {"user_id": user_id, "status": api.set_user_status(user_id, "approve", actor)}

    @app.post("/api/v1/admin/topup")
    def top_up(body: TopUpIn, actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        found = need_accounts().user(body.user_id)
        if found is None:
            raise ServiceError(404, "no_user", body.user_id)
        with platform.lock:
            sig = platform.dep.top_up(
                pubkey(str(found["wallet"]), "wallet"), body.micro_thb, body.reference
            )
        auditlog.append(
            platform.books,
            actor,
            "admin.topup",
            {"user_id": body.user_id, "micro_thb": body.micro_thb, "reference": body.reference},
        )
        return {"transaction": sig}

    @app.post("/api/v1/admin/withdraw")
    def withdraw(body: TopUpIn, actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        """Fiat off-ramp: burn a custodial wallet's THB against a payout (idempotent)."""
        name = f"user/{body.user_id}"
        if name not in platform.keys:
            raise ServiceError(404, "no_custodial_wallet", body.user_id)
        with platform.lock:
            sig = platform.dep.withdraw(platform.keys.get(name), body.micro_thb, body.reference)
        auditlog.append(
            platform.books,
            actor,
            "admin.withdraw",
            {"user_id": body.user_id, "micro_thb": body.micro_thb, "reference": body.reference},
        )
        return {"transaction": sig}

    @app.put("/api/v1/admin/market/parameters")
    def parameters(body: ParametersIn, actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        changes = body.model_dump(exclude_none=True)
        return need_trading().set_parameters(actor, changes)

    @app.post("/api/v1/admin/market/halt")
    def halt(body: HaltIn, actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        need_trading().halt(actor, body.reason)
        return {"halted": body.reason}

    @app.post("/api/v1/admin/market/resume")
    def resume(actor: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        need_trading().resume(actor)
        return {"halted": None}

    @app.get("/api/v1/admin/audit")
    def audit_log(
        actor: Annotated[str, Depends(admin)], limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        return {
            "entries": auditlog.entries(platform.books, limit),
            "broken_at": auditlog.verify(platform.books),
        }

    @app.get("/api/v1/admin/users")
    def list_users(actor: Annotated[str, Depends(admin)]) -> list[dict[str, Any]]:
        with platform.books.connect() as c:
            return [
                {k: v for k, v in r._mapping.items() if k != "password_hash"}
                for r in c.execute(select(users).order_by(users.c.created_at))
            ]

    # -- events -----------------------------------------------------------------------------------
    @app.websocket("/ws")
    async def events(ws: WebSocket, token: str | None = None) -> None:
        """Send {"subscribe": ["market", "account"]}; receive {"type": ..., "data": ...}."""
        await ws.accept()
        try:
            claims = need_accounts().verify(token or "")
        except (AuthError, ServiceError) as err:
            await ws.close(code=4401, reason=getattr(err, "code", "unauthorized"))
            return
        sub = fanout.subscribe(claims.user_id)

        async def receive() -> None:
            while True:
                message = await ws.receive_json()
                topics = message.get("subscribe", []) if isinstance(message, dict) else []
                sub.topics |= {t for t in topics if t in ("market", "account")}
                await sub.queue.put({"type": "subscribed", "data": sorted(sub.topics)})

        reader = asyncio.create_task(receive())
        try:
            while True:
                getter = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    return
                item = getter.result()
                if item is None:  # dropped for being too slow
                    await ws.close(code=4408, reason="too_slow")
                    return
                await ws.send_json(item)
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            reader.cancel()
            fanout.unsubscribe(sub)

    from gridtokenx.api.pages import add_pages

    add_pages(app)

    # -- hubs -------------------------------------------------------------------------------------
    @app.post("/api/v1/hub/batches")
    def submit_batch(body: BatchIn, hub_id: Annotated[str, Depends(hub)]) -> dict[str, Any]:
        readings = [(unhex(r, "reading"), unhex(s, "signature")) for r, s in body.readings]
        out = platform.receive_batch(
            hub_id,
            body.epoch,
            unhex(body.header, "header"),
            unhex(body.hub_signature, "hub_signature"),
            readings,
        )
        return _outcome(out)

    @app.post("/api/v1/hub/batches/{epoch}/signatures")
    def sign_batch(
        epoch: Annotated[int, PathParam(ge=0, le=EPOCH_MAX)],
        body: SignaturesIn,
        hub_id: Annotated[str, Depends(hub)],
    ) -> dict[str, Any]:
        try:
            raw = [base64.b64decode(s, validate=True) for s in body.signatures]
        except ValueError:
            raise ServiceError(422, "invalid_request", "signatures are base64") from None
        return _outcome(platform.sign_batch(hub_id, epoch, raw))

    return app
