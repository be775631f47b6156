"""A household's balances and the ledger transactions that touch its wallet."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gridtokenx.api.deps import PlatformDep, UserDep, pubkey
from gridtokenx.api.schemas import WalletOut, errors

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
