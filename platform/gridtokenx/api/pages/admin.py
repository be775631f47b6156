"""`/admin`: the operator's page (market parameters, halt/resume, users, hubs, meters, the
audit log, the feeder map and curtailments)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from gridtokenx import auditlog, books
from gridtokenx.api.pages.layout import api_of, back, operator, page
from gridtokenx.errors import CodedError
from gridtokenx.tables import users

router = APIRouter()


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> Response:
    api = api_of(request)
    claims = operator(request)
    if claims is None:
        return back("/login", error="Operators only.")
    p, t = api.platform, api.trading
    with p.books.connect() as c:
        all_users = [
            dict(r._mapping) for r in c.execute(users.select().order_by(users.c.created_at))
        ]
    config = t.config if t else None
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
        users=all_users,
        audit=auditlog.entries(p.books, 50),
        broken=auditlog.verify(p.books),
        hubs=[
            {"hub_id": h["hub_id"], "key": bytes(h["public_key"]).hex()}
            for h in books.rows(p.books, books.hubs)
        ],
        meters=books.rows(p.books, books.meters),
        grid_map=t.grid.svg() if t and t.grid else None,
        grid_code=t.grid.grid.code if t and t.grid else None,
        curtailments=list(reversed(t.grid.curtailments[-20:])) if t and t.grid else [],
    )


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
    return back("/admin", notice=f"User {action}d.")
