"""`/admin`: the operator's page (market parameters, halt/resume, users, hubs and meters with
approve/suspend, governance proposals, the audit log, the feeder map and curtailments)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from solders.pubkey import Pubkey

from gridtokenx import auditlog
from gridtokenx.adapters import books, queries
from gridtokenx.api.pages.layout import api_of, back, operator, page
from gridtokenx.api.schemas import REGISTRY_CURSOR_PATTERN, USER_CURSOR_PATTERN
from gridtokenx.errors import CodedError
from gridtokenx.governing import Governing

router = APIRouter()
DONE = {"suspend": "suspended", "approve": "approved"}
USERS_PER_PAGE = 100
REGISTRY_PER_PAGE = 100  # hubs, and meters, a page
Registry = Annotated[str | None, Query(pattern=REGISTRY_CURSOR_PATTERN)]


@router.get("/admin", response_class=HTMLResponse)
def admin_page(
    request: Request,
    users_cursor: Annotated[str | None, Query(pattern=USER_CURSOR_PATTERN)] = None,
    hubs_after: Registry = None,
    meters_after: Registry = None,
) -> Response:
    """One page of users (oldest first, as `GET /api/v1/admin/users`), of hubs and of
    meters (by id), not the whole tables."""
    api = api_of(request)
    claims = operator(request)
    if claims is None:
        return back("/login", error="Operators only.")
    p, t = api.platform, api.trading
    after = None
    if users_cursor is not None:
        created_at, user_id = users_cursor.split(".", 1)
        after = (int(created_at), user_id)
    rows = queries.users_page(p.books, USERS_PER_PAGE + 1, after)
    users_next = None
    if len(rows) > USERS_PER_PAGE:
        last = rows[USERS_PER_PAGE - 1]
        users_next = f"{last['created_at']}.{last['user_id']}"
    hubs, hubs_next = _registry(p, books.hubs, "hub_id", hubs_after)
    meters, meters_next = _registry(p, books.meters, "meter_id", meters_after)
    config = t.config if t else None
    audit_page, _, broken, _ = auditlog.verify_page(p.books, 50)  # the page's links, what is new
    return page(
        request,
        "admin.html",
        claims,
        halted=t.market.halted if t else None,
        params={
            "mechanism": config.mechanism.value if config else "-",
            "fee_bps": config.fee_bps if config else 0,
            "min_price": config.min_price if config else 0,
            "max_price": config.max_price if config else 0,
            "max_quantity_wh": config.max_quantity_wh if config else 0,
        },
        users=rows[:USERS_PER_PAGE],
        users_next=users_next,
        audit=audit_page,
        broken=broken,
        hubs=[
            {"hub_id": h["hub_id"], "key": bytes(h["public_key"]).hex(), "status": h["status"]}
            for h in hubs
        ],
        hubs_next=hubs_next,
        meters=meters,
        meters_next=meters_next,
        auto_approve=api.auto_approve,
        kyc_url=api.kyc.url if api.kyc is not None else None,
        proposals=_proposals(api),
        grid_map=t.grid.svg() if t and t.grid else None,
        grid_code=t.grid.grid.code if t and t.grid else None,
        curtailments=list(reversed(t.grid.curtailments[-20:])) if t and t.grid else [],
    )


def _registry(
    p: Any, table: Any, key: str, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of hubs or meters after the id `after`, and the next page's cursor."""
    rows = queries.registry_page(p.books, table, key, REGISTRY_PER_PAGE + 1, after)
    more = len(rows) > REGISTRY_PER_PAGE
    return rows[:REGISTRY_PER_PAGE], str(rows[REGISTRY_PER_PAGE - 1][key]) if more else None


@router.post("/admin/halt")
def halt(request: Request, reason: str = Form(max_length=200)) -> Response:
    api = api_of(request)
    claims = operator(request)
    if claims is None or api.trading is None:
        return back("/login", error="Operators only.")
    api.trading.halt(claims.user_id, reason)
    return back("/admin", notice="The market is halted.")


@router.post("/admin/resume")
def resume(request: Request) -> Response:
    api = api_of(request)
    claims = operator(request)
    if claims is None or api.trading is None:
        return back("/login", error="Operators only.")
    api.trading.resume(claims.user_id)
    return back("/admin", notice="The market is open again.")


@router.post("/admin/users/{user_id}/{action}")
def user_action(request: Request, user_id: str, action: str) -> Response:
    api = api_of(request)
    claims = operator(request)
    if claims is None or api.accounts is None or action not in ("suspend", "approve"):
        return back("/login", error="Operators only.")
    try:
        api.set_user_status(user_id, action, claims.user_id)
    except CodedError as err:
        return back("/admin", error=err.message)
    return back("/admin", notice=f"User {DONE[action]}.")


def _registry_action(request: Request, kind: str, key: str, action: str) -> Response:
    """Approve or suspend a hub or a meter (the same as the admin API's, audited)."""
    from gridtokenx.api.routers.admin import set_status

    api = api_of(request)
    claims = operator(request)
    if claims is None or action not in DONE:
        return back("/login", error="Operators only.")
    try:
        set_status(api.platform, kind, key, action, claims.user_id)
    except CodedError as err:
        return back("/admin", error=err.message)
    return back("/admin", notice=f"{kind.capitalize()} {key} {DONE[action]}.")


@router.post("/admin/hubs/{hub_id}/{action}")
def hub_action(request: Request, hub_id: str, action: str) -> Response:
    return _registry_action(request, "hub", hub_id, action)


@router.post("/admin/meters/{meter_id}/{action}")
def meter_action(request: Request, meter_id: str, action: str) -> Response:
    return _registry_action(request, "meter", meter_id, action)


def _proposals(api: Any) -> list[dict[str, Any]]:
    """The proposals, newest first, each signer named by its holder."""
    dep = api.platform.dep
    out = []
    for p in Governing(api.platform, api.trading).proposals(20):
        holders = {k: dep.holder_of(Pubkey.from_string(k)) or k[:12] for k in p["signers"]}
        out.append(
            {
                **p,
                "signed_by": [holders[k] for k in p["signers"] if k in p["signatures"]],
                "missing_by": [holders[k] for k in p["missing"]],
            }
        )
    return out


def _governed(request: Request, act: Any, notice: str) -> Response:
    """Run one governance step as the signed-in operator; a refusal is shown, not raised."""
    api = api_of(request)
    claims = operator(request)
    if claims is None:
        return back("/login", error="Operators only.")
    try:
        done = act(Governing(api.platform, api.trading), claims.user_id)
    except CodedError as err:
        return back("/admin", error=f"{err.code}: {err.message}")
    return back("/admin", notice=notice.format(**done))


Id = Path(ge=1, le=2**31)


@router.post("/admin/governance")
def propose(
    request: Request,
    kind: str = Form(max_length=20),
    args: str = Form("", max_length=200),
    signers: str = Form(max_length=60),
) -> Response:
    pairs = dict(a.split("=", 1) for a in args.split() if "=" in a)
    parties = [s.strip() for s in signers.split(",") if s.strip()]
    return _governed(
        request,
        lambda g, actor: g.propose(actor, kind, pairs, parties),
        "Proposal {id} ({kind}) made: it needs its signers' signatures.",
    )


@router.post("/admin/governance/{proposal_id}/sign")
def sign(request: Request, proposal_id: int = Id) -> Response:
    return _governed(
        request,
        lambda g, actor: g.sign_as_platform(actor, proposal_id),
        "Proposal {id} signed with the platform's key.",
    )


@router.post("/admin/governance/{proposal_id}/signatures")
def add_signature(
    request: Request,
    proposal_id: int = Id,
    signer: str = Form(max_length=44),
    signature: str = Form(max_length=88),
) -> Response:
    return _governed(
        request,
        lambda g, actor: g.add_signature(actor, proposal_id, signer, signature),
        "Signature added to proposal {id}.",
    )


@router.post("/admin/governance/{proposal_id}/execute")
def execute(request: Request, proposal_id: int = Id) -> Response:
    return _governed(
        request,
        lambda g, actor: g.execute(actor, proposal_id),
        "Proposal {id} executed: {transaction}.",
    )
