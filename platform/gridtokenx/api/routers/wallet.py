"""A household's balances, the ledger transactions that touch its wallet, and its
statement to check itself (docs/statement.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from gridtokenx.api.deps import ApiDep, PlatformDep, UserDep, pubkey
from gridtokenx.api.schemas import StatementOut, WalletOut, errors

router = APIRouter(
    prefix="/api/v1", tags=["wallet"], responses=errors(401, 403, 413, 422, 429, 503)
)


@router.get("/wallet", response_model=WalletOut)
def wallet(claims: UserDep, platform: PlatformDep) -> dict[str, Any]:
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
