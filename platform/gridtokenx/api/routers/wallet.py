"""A household's balances, the ledger transactions that touch its wallet, its statement to
check itself (docs/statement.md), and a self-custody wallet's allowance to the platform's
delegate (prepared here, signed by its own key: custody.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from gridtokenx import auditlog, custody
from gridtokenx.adapters import ledger_index
from gridtokenx.api.deps import AccountsDep, ApiDep, PlatformDep, UserDep, pubkey
from gridtokenx.api.schemas import (
    CURSOR_HELP,
    CURSOR_PATTERN,
    NEXT_CURSOR,
    AllowanceIn,
    AllowanceSignedIn,
    PreparedOut,
    SignatureOut,
    StatementOut,
    WalletOut,
    errors,
)
from gridtokenx.errors import Conflict
from gridtokenx.services.site import Platform

router = APIRouter(
    prefix="/api/v1", tags=["wallet"], responses=errors(401, 403, 413, 422, 429, 503)
)


def wallet_transactions(
    platform: Platform, owner: Any, limit: int, before: int | None = None
) -> list[dict[str, Any]]:
    """The ledger transactions naming the wallet or its GRX and THB accounts, newest first:
    the per-account record (adapters/ledger_index.py), caught up first with what landed
    since the last look, so the cost follows the page and what is new, not the chain."""
    dep = platform.dep
    accounts = {str(dep.grx.account_of(owner)), str(dep.thb.account_of(owner)), str(owner)}
    ledger_index.catch_up(platform.books, platform.ledger)
    return ledger_index.entries_of(platform.books, accounts, limit, before)


@router.get("/wallet", response_model=WalletOut, responses=NEXT_CURSOR)
def wallet(
    claims: UserDep,
    platform: PlatformDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_HELP)] = None,
) -> dict[str, Any]:
    """Balances, allowances and the newest ledger transactions, a page at a time: the
    cursor is the last transaction's place in the chain (`next_cursor`, also the
    `Next-Cursor` header; absent on the last page)."""
    owner = pubkey(claims.wallet, "wallet")
    dep = platform.dep
    rows = wallet_transactions(platform, owner, limit + 1, None if cursor is None else int(cursor))
    txs = [{"signature": r["signature"], "memos": r["memos"]} for r in rows[:limit]]
    next_cursor = str(rows[limit - 1]["pos"]) if len(rows) > limit else None
    if next_cursor is not None:
        response.headers["Next-Cursor"] = next_cursor
    delegate = platform.delegate.pubkey()

    return {
        "wallet": str(owner),
        "grx_wh": dep.grx.balance(owner),
        "thb_micro": dep.thb.balance(owner),
        "frozen": dep.grx.is_frozen(owner),
        "custodial": platform.keys.name_of(str(owner)) is not None,
        "delegate": str(delegate),
        "allowance_grx_wh": dep.grx.left_for(owner, delegate),
        "allowance_thb_micro": dep.thb.left_for(owner, delegate),
        "transactions": txs,
        "next_cursor": next_cursor,
    }


def statement_download(api: Any, user_id: str, first: str, last: str) -> Response:
    """The statement as a file to save (`gridtokenx verify FILE` checks it)."""
    from gridtokenx.statement.build import build

    p = api.platform
    epoch_s = api.trading.epoch_s if api.trading is not None else 900.0
    mints = (str(p.dep.grx.address), str(p.dep.thb.address))
    doc = build(p.books, p.ledger, mints, user_id, first, last, epoch_s)
    return Response(
        json.dumps(doc, indent=1),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="statement-{first}-{last}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get(
    "/statement",
    responses={
        200: {"model": StatementOut, "description": "The statement, as a file"},
        **errors(404),
    },
)
def statement(
    claims: UserDep,
    api: ApiDep,
    first: Annotated[str, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$")],
    last: Annotated[str, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}$")],
) -> Response:
    """The signed-in household's statement of these UTC days (at most 93)."""
    return statement_download(api, claims.user_id, first, last)


def _approvals(platform: Platform, owner: Any, body: AllowanceIn) -> list[Any]:
    """ApproveChecked on the wallet's GRX and THB accounts, naming the platform's delegate
    (an amount replaces the allowance left; 0 revokes it in effect)."""
    dep, delegate = platform.dep, platform.delegate.pubkey()
    return [
        dep.grx.approve_ix(owner, delegate, body.grx_wh),
        dep.thb.approve_ix(owner, delegate, body.thb_micro),
    ]


def _self_custody(platform: Platform, wallet: str) -> Any:
    owner = pubkey(wallet, "wallet")
    if platform.keys.name_of(wallet) is not None:
        raise Conflict("custodial_wallet", "a custodial wallet needs no allowance")
    return owner


@router.post("/wallet/allowance/prepare", response_model=PreparedOut, responses=errors(409))
def prepare_allowance(body: AllowanceIn, claims: UserDep, platform: PlatformDep) -> dict[str, Any]:
    """The allowance message for the wallet's own key to sign (the platform pays the fee)."""
    owner = _self_custody(platform, claims.wallet)
    with platform.lock:
        return {"message": custody.prepare(platform.ledger, _approvals(platform, owner, body))}


@router.post("/wallet/allowance", response_model=SignatureOut, responses=errors(409))
def grant_allowance(
    body: AllowanceSignedIn, claims: UserDep, platform: PlatformDep, accounts: AccountsDep
) -> dict[str, Any]:
    """The signed allowance, sent if it is exactly the message prepared for this wallet."""
    owner = _self_custody(platform, claims.wallet)
    with platform.lock:
        sig = custody.submit(
            platform.ledger,
            _approvals(platform, owner, body),
            owner,
            body.message,
            body.signature,
        )
    auditlog.append(
        platform.books,
        claims.user_id,
        "wallet.allowance",
        {"grx_wh": body.grx_wh, "thb_micro": body.thb_micro, "transaction": sig},
    )
    return {"transaction": sig}
