"""The platform's HTTP API: a thin adapter over `gridtokenx.service`.

Errors are JSON `{"code": ..., "message": ...}` with a stable code; bad input is 4xx.
"""

import base64
import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from solders.pubkey import Pubkey

from gridtokenx.ledger.backend import LedgerError
from gridtokenx.service import Outcome, Platform, ServiceError

HEX = r"^([0-9a-fA-F]{2})*$"


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
    epoch: int = Field(ge=0)
    header: str = Field(pattern=HEX, max_length=2_000_000)
    hub_signature: str = Field(pattern=r"^[0-9a-fA-F]{128}$")
    readings: list[tuple[str, str]] = Field(max_length=500_000)


class SignaturesIn(BaseModel):
    signatures: list[str] = Field(max_length=10_000)


def _outcome(out: Outcome) -> dict[str, Any]:
    return {
        "state": out.state,
        "messages": [base64.b64encode(bytes(p.message)).decode() for p in out.proposals],
        "memos": [p.memo for p in out.proposals],
        "transactions": list(out.transactions),
    }


def create_app(platform: Platform, admin_token: str | None = None) -> FastAPI:
    app = FastAPI(title="GridTokenX platform", version="1", docs_url="/docs")

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse(
            {"code": f"ledger_{exc.code}", "message": "the ledger refused the transaction"},
            status_code=409,
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = (
            exc.detail
            if isinstance(exc.detail, dict)
            else {"code": "error", "message": str(exc.detail)}
        )
        return JSONResponse(detail, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"code": "invalid_request", "message": f"{where}: {first.get('msg', 'invalid')}"},
            status_code=422,
        )

    def bearer(authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise ServiceError(401, "no_token", "Authorization: Bearer <token> is required")
        return authorization.removeprefix("Bearer ")

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        token = bearer(authorization)
        if admin_token is None or not hmac.compare_digest(token, admin_token):
            raise ServiceError(403, "not_admin", "an admin token is required")

    def hub(authorization: Annotated[str | None, Header()] = None) -> str:
        return platform.hub_of_token(bearer(authorization))

    def unhex(text: str, what: str) -> bytes:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ServiceError(422, "invalid_request", f"{what} is not hex") from None

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict[str, Any]:
        return {"status": "ready", "grx_mint": str(platform.dep.grx.address)}

    @app.post("/api/v1/admin/hubs", status_code=201, dependencies=[Depends(admin)])
    def add_hub(body: HubIn) -> dict[str, str]:
        platform.register_hub(body.hub_id, bytes.fromhex(body.public_key), body.token)
        return {"hub_id": body.hub_id}

    @app.post("/api/v1/admin/users", status_code=201, dependencies=[Depends(admin)])
    def add_user(body: UserIn) -> dict[str, str]:
        return {"name": body.name, "wallet": str(platform.register_user(body.name))}

    @app.post("/api/v1/admin/meters", status_code=201, dependencies=[Depends(admin)])
    def add_meter(body: MeterIn) -> dict[str, str]:
        try:
            owner = Pubkey.from_string(body.owner)
        except ValueError:
            raise ServiceError(422, "invalid_request", "owner is not a base58 public key") from None
        platform.register_meter(body.meter_id, bytes.fromhex(body.public_key), owner)
        return {"meter_id": body.meter_id}

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
        epoch: int, body: SignaturesIn, hub_id: Annotated[str, Depends(hub)]
    ) -> dict[str, Any]:
        try:
            raw = [base64.b64decode(s, validate=True) for s in body.signatures]
        except ValueError:
            raise ServiceError(422, "invalid_request", "signatures are base64") from None
        return _outcome(platform.sign_batch(hub_id, epoch, raw))

    return app
