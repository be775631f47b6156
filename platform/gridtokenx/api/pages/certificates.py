"""`/certificates`: a household's certificates, with transfer and retire."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from solders.pubkey import Pubkey

from gridtokenx.adapters import ledger_index, queries
from gridtokenx.api.pages.layout import api_of, back, page, session
from gridtokenx.keynames import user_key
from gridtokenx.ledger.certificates import CertificateError

router = APIRouter()
SHOWN = 100  # the newest certificates shown; the API pages through the rest


@router.get("/certificates", response_class=HTMLResponse)
def certificates_page(request: Request) -> Response:
    api = api_of(request)
    claims = session(request)
    if claims is None:
        return back("/login")
    """The newest certificates the wallet holds, from the certificate index (as the API's
    `GET certificates`), not a pass over the chain's history."""
    platform = api.platform
    ledger_index.catch_up_certificates(platform.books, platform.ledger)
    mine = [
        {
            "mint": c["mint"],
            "meter_id": c["meter_id"],
            "period": c["period"],
            "wh": c["to_wh"] - c["from_wh"],
            "status": c["status"],
        }
        for c in queries.certificates_of_holder(platform.books, claims.wallet, SHOWN)
    ]
    return page(request, "certificates.html", claims, certificates=mine)


@router.post("/certificates/{mint}/{action}")
def certificate_action(
    request: Request,
    mint: str,
    action: str,
    beneficiary: str = Form(""),
    to_wallet: str = Form(""),
) -> Response:
    api = api_of(request)
    claims = session(request)
    if claims is None:
        return back("/login")
    name = user_key(claims.user_id)
    if name not in api.platform.keys or action not in ("retire", "transfer"):
        return back("/certificates", error="Only custodial wallets retire or transfer here.")
    key = api.platform.keys.get(name)
    registry = api.platform.certificates
    try:
        address = Pubkey.from_string(mint)
        with api.platform.lock:
            if action == "retire":
                registry.retire(address, key, beneficiary[:200] or "unnamed")
            else:
                registry.transfer(address, key, Pubkey.from_string(to_wallet))
    except (CertificateError, ValueError) as err:
        return back("/certificates", error=str(err))
    return back("/certificates", notice=f"Certificate {action}d.")
