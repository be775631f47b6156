"""The operator's API: hubs, meters and users (register, suspend, approve), fiat on/off-ramp,
market parameters and halts, governance proposals, the audit log. Every change is audited."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from gridtokenx import auditlog
from gridtokenx.adapters import queries
from gridtokenx.api.deps import AccountsDep, AdminDep, ApiDep, PlatformDep, TradingDep, pubkey
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    CURSOR_PATTERN,
    NEXT_CURSOR,
    USER_CURSOR_PATTERN,
    AuditOut,
    HaltIn,
    HaltOut,
    HubAddedOut,
    HubIn,
    MeterAddedOut,
    MeterIn,
    ParametersIn,
    ParametersOut,
    ProposalIn,
    ProposalOut,
    ProposalSignatureIn,
    ProposalsOut,
    SignatureOut,
    StatusOut,
    TopUpIn,
    UserAddedOut,
    UserIn,
    UserOut,
    UserStatusOut,
    errors,
)
from gridtokenx.errors import Conflict, NotFound
from gridtokenx.governing import Governing, refuse_fee_change
from gridtokenx.keynames import user_key
from gridtokenx.services.site import Platform

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=errors(401, 403, 404, 409, 413, 422, 429, 503)
)


@router.post("/hubs", status_code=201, response_model=HubAddedOut)
def add_hub(body: HubIn, actor: AdminDep, platform: PlatformDep) -> dict[str, str]:
    platform.register_hub(body.hub_id, bytes.fromhex(body.public_key), body.token)
    auditlog.append(platform.books, actor, "admin.hub_add", {"hub_id": body.hub_id})
    return {"hub_id": body.hub_id}


@router.post("/users", status_code=201, response_model=UserAddedOut)
def add_user(body: UserIn, actor: AdminDep, platform: PlatformDep) -> dict[str, str]:
    return {"name": body.name, "wallet": str(platform.register_user(body.name))}


@router.post("/meters", status_code=201, response_model=MeterAddedOut)
def add_meter(body: MeterIn, actor: AdminDep, platform: PlatformDep) -> dict[str, str]:
    owner = pubkey(body.owner, "owner")
    platform.register_meter(body.meter_id, bytes.fromhex(body.public_key), owner)
    auditlog.append(platform.books, actor, "admin.meter_add", {"meter_id": body.meter_id})
    return {"meter_id": body.meter_id}


@router.post("/users/{user_id}/suspend", response_model=UserStatusOut)
def suspend(user_id: str, actor: AdminDep, api: ApiDep) -> dict[str, str]:
    return {"user_id": user_id, "status": api.set_user_status(user_id, "suspend", actor)}


@router.post("/users/{user_id}/approve", response_model=UserStatusOut)
def approve(user_id: str, actor: AdminDep, api: ApiDep) -> dict[str, str]:
    return {"user_id": user_id, "status": api.set_user_status(user_id, "approve", actor)}


def set_status(platform: Platform, kind: str, key: str, action: str, actor: str) -> dict[str, str]:
    if action not in ("suspend", "approve"):
        raise NotFound("not_found", f"{action}: suspend or approve")
    status = "suspended" if action == "suspend" else "active"
    platform.set_status(kind, key, status)
    auditlog.append(platform.books, actor, f"admin.{kind}_{action}", {"id": key})
    return {"id": key, "status": status}


@router.post("/hubs/{hub_id}/{action}", response_model=StatusOut)
def hub_status(hub_id: str, action: str, actor: AdminDep, platform: PlatformDep) -> dict[str, str]:
    return set_status(platform, "hub", hub_id, action, actor)


@router.post("/meters/{meter_id}/{action}", response_model=StatusOut)
def meter_status(
    meter_id: str, action: str, actor: AdminDep, platform: PlatformDep
) -> dict[str, str]:
    return set_status(platform, "meter", meter_id, action, actor)


@router.post("/topup", response_model=SignatureOut)
def top_up(
    body: TopUpIn, actor: AdminDep, platform: PlatformDep, accounts: AccountsDep
) -> dict[str, Any]:
    found = accounts.user(body.user_id)
    if found is None:
        raise NotFound("no_user", body.user_id)
    wallet = pubkey(str(found["wallet"]), "wallet")
    if not platform.dep.is_approved(wallet):  # THB is minted only after approval
        raise Conflict("not_approved", "this account waits for approval: top it up after")
    with platform.lock:
        sig = platform.dep.top_up(wallet, body.micro_thb, body.reference)
    auditlog.append(
        platform.books,
        actor,
        "admin.topup",
        {"user_id": body.user_id, "micro_thb": body.micro_thb, "reference": body.reference},
    )
    return {"transaction": sig}


@router.post("/withdraw", response_model=SignatureOut)
def withdraw(body: TopUpIn, actor: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    """Fiat off-ramp: burn a custodial wallet's THB against a payout (idempotent)."""
    name = user_key(body.user_id)
    if name not in platform.keys:
        raise NotFound("no_custodial_wallet", body.user_id)
    with platform.lock:
        sig = platform.dep.withdraw(platform.keys.get(name), body.micro_thb, body.reference)
    auditlog.append(
        platform.books,
        actor,
        "admin.withdraw",
        {"user_id": body.user_id, "micro_thb": body.micro_thb, "reference": body.reference},
    )
    return {"transaction": sig}


@router.put("/market/parameters", response_model=ParametersOut)
def parameters(body: ParametersIn, actor: AdminDep, t: TradingDep) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
    refuse_fee_change(changes)  # the fee is the governance threshold's (governing.py)
    return t.set_parameters(actor, changes)


@router.post("/market/halt", response_model=HaltOut)
def halt(body: HaltIn, actor: AdminDep, t: TradingDep) -> dict[str, Any]:
    t.halt(actor, body.reason)
    return {"halted": body.reason}


@router.post("/market/resume", response_model=HaltOut)
def resume(actor: AdminDep, t: TradingDep) -> dict[str, Any]:
    t.resume(actor)
    return {"halted": None}


@router.get("/audit", response_model=AuditOut, responses=NEXT_CURSOR)
def audit_log(
    actor: AdminDep,
    platform: PlatformDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_HELP)] = None,
) -> dict[str, Any]:
    """The newest entries first, a page at a time: the cursor is the last entry's sequence
    number, so a page reads its rows by the primary key however long the log is. `broken_at`
    is the first broken link among the page's entries (with the one before it) and those
    appended since the last verified checkpoint (auditlog.verify_page): the cost follows the
    page and what is new (at most 50,000 entries a page: `verified_to` says how far the
    chain is checked); `gridtokenx audit` checks the whole chain."""
    page, more, broken, verified_to = auditlog.verify_page(
        platform.books, limit, None if cursor is None else int(cursor)
    )
    next_cursor = str(page[-1]["seq"]) if more else None
    if next_cursor is not None:
        response.headers["Next-Cursor"] = next_cursor
    return {
        "entries": page,
        "broken_at": broken,
        "next_cursor": next_cursor,
        "verified_to": verified_to,
    }


UserStatus = Literal["active", "pending", "suspended"]


@router.get("/users", response_model=list[UserOut], responses=NEXT_CURSOR)
def list_users(
    actor: AdminDep,
    platform: PlatformDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=USER_CURSOR_PATTERN, description=CURSOR_HELP)
    ] = None,
    status: UserStatus | None = None,
) -> list[dict[str, Any]]:
    """The users oldest first by (created_at, user_id), all or those of one status; the next
    page's cursor is the `Next-Cursor` header, absent on the last page."""
    after = None
    if cursor is not None:
        created_at, user_id = cursor.split(".", 1)
        after = (int(created_at), user_id)
    rows = queries.users_page(platform.books, limit + 1, after, status)
    page = rows[:limit]
    if len(rows) > limit:
        response.headers["Next-Cursor"] = f"{page[-1]['created_at']}.{page[-1]['user_id']}"
    return page


# -- governance (the same proposals as `gridtokenx governance`, governing.py) -------------------
ProposalId = Annotated[int, Path(ge=1, le=2**31)]


@router.get("/governance", response_model=ProposalsOut, responses=NEXT_CURSOR)
def proposals(
    actor: AdminDep,
    api: ApiDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_HELP)] = None,
) -> dict[str, Any]:
    """The proposals newest first by id; the next page's cursor is the `Next-Cursor` header,
    absent on the last page."""
    before = None if cursor is None else int(cursor)
    rows = Governing(api.platform, api.trading).proposals(limit + 1, before)
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    if next_cursor is not None:
        response.headers["Next-Cursor"] = next_cursor
    return {"proposals": page, "next_cursor": next_cursor}


@router.post("/governance", status_code=201, response_model=ProposalOut)
def propose(body: ProposalIn, actor: AdminDep, api: ApiDep) -> dict[str, Any]:
    return Governing(api.platform, api.trading).propose(actor, body.kind, body.args, body.signers)


@router.post("/governance/{proposal_id}/sign", response_model=ProposalOut)
def sign_as_platform(proposal_id: ProposalId, actor: AdminDep, api: ApiDep) -> dict[str, Any]:
    """The platform's own signature: one party's, never a threshold."""
    return Governing(api.platform, api.trading).sign_as_platform(actor, proposal_id)


@router.post("/governance/{proposal_id}/signatures", response_model=ProposalOut)
def add_signature(
    proposal_id: ProposalId, body: ProposalSignatureIn, actor: AdminDep, api: ApiDep
) -> dict[str, Any]:
    """Another party's signature, made with its own keystore; checked before it is kept."""
    return Governing(api.platform, api.trading).add_signature(
        actor, proposal_id, body.signer, body.signature
    )


@router.post("/governance/{proposal_id}/execute", response_model=ProposalOut)
def execute(proposal_id: ProposalId, actor: AdminDep, api: ApiDep) -> dict[str, Any]:
    """Sent with the signatures it has: the chain refuses one short of its threshold."""
    return Governing(api.platform, api.trading).execute(actor, proposal_id)
