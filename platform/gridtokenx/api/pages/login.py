"""`/login` and `/logout`: the session cookie holds the API's own access token."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from gridtokenx import auditlog
from gridtokenx.accounts import AuthError
from gridtokenx.api.pages.layout import COOKIE, api_of, back, page, session

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return page(
        request, "form.html", session(request), heading="Log in", action="/login", signup=False
    )


@router.post("/login")
def login(
    request: Request, email: str = Form(max_length=254), password: str = Form(max_length=200)
) -> Response:
    api = api_of(request)
    if api.accounts is None:
        return back("/", error="accounts are not enabled")
    ip = api.client_ip(request)
    try:
        tokens = api.accounts.login(email, password, ip)
    except AuthError as err:
        auditlog.append(
            api.platform.books, email[:64], "auth.login_failed", {"via": "page", "ip": ip}
        )
        return back("/login", error=err.message)
    auditlog.append(api.platform.books, email[:64], "auth.login", {"via": "page"})
    response = back("/me")
    response.set_cookie("gtx_access", tokens.access_token, max_age=tokens.expires_in, **COOKIE)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session: the cookie's access token stops working, not only the cookie."""
    api, token = api_of(request), request.cookies.get("gtx_access")
    if token and api.accounts is not None:
        api.accounts.logout_access(token)
    response = back("/")
    response.delete_cookie("gtx_access")
    return response
