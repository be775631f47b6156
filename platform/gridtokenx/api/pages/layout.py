"""What every page shares: the templates, the session (the access-token cookie), rendering
with the signed-in user and epochs as the site's times of day (`when`), redirects with a
notice or an error, THB formatting."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from gridtokenx.accounts import AuthError, Claims
from gridtokenx.api.deps import Api
from gridtokenx.sitetime import epoch_label, site_zone, zone_name

TEMPLATES_DIR = Path(__file__).parent / "templates"
COOKIE: dict[str, Any] = {"httponly": True, "samesite": "strict"}


TEMPLATES = Jinja2Templates(directory=str(TEMPLATES_DIR))


def api_of(request: Request) -> Api:
    return request.app.state.api  # type: ignore[no-any-return]


def thb(micro: int | None) -> str:
    return "-" if micro is None else f"{Decimal(micro) / 1_000_000:.6f}".rstrip("0").rstrip(".")


def session(request: Request) -> Claims | None:
    """The signed-in user of this browser, or None."""
    token = request.cookies.get("gtx_access")
    accounts = api_of(request).accounts
    if not token or accounts is None:
        return None
    try:
        return accounts.verify(token)
    except AuthError:
        return None


def operator(request: Request) -> Claims | None:
    claims = session(request)
    return claims if claims is not None and claims.role == "admin" else None


def page(request: Request, name: str, claims: Claims | None, **context: Any) -> HTMLResponse:
    user = None
    accounts = api_of(request).accounts
    if claims is not None and accounts is not None:
        user = {"email": (accounts.user(claims.user_id) or {}).get("email"), "role": claims.role}
    context.setdefault("error", request.query_params.get("error"))
    context.setdefault("notice", request.query_params.get("notice"))
    trading, zone = api_of(request).trading, site_zone()
    epoch_s = trading.epoch_s if trading is not None else None
    context["when"] = lambda epoch: (
        epoch_label(int(epoch), epoch_s, zone) if epoch_s and str(epoch).isdigit() else epoch
    )
    context["zone"] = zone_name(zone)
    return TEMPLATES.TemplateResponse(request, name, {"me": user, **context})


def back(url: str, **query: str) -> RedirectResponse:
    return RedirectResponse(url + ("?" + urlencode(query) if query else ""), status_code=303)
