"""`/signup`: a household account with a custodial wallet, then signed in."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from gridtokenx import auditlog
from gridtokenx.accounts import AuthError
from gridtokenx.api.pages import login
from gridtokenx.api.pages.layout import api_of, back, page, session
from gridtokenx.keynames import user_key

router = APIRouter()


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request) -> HTMLResponse:
    return page(
        request, "form.html", session(request), heading="Sign up", action="/signup", signup=True
    )


@router.post("/signup")
def signup(
    request: Request,
    email: str = Form(max_length=254),
    password: str = Form(max_length=200),
    role: str = Form("consumer"),
) -> Response:
    api = api_of(request)
    if api.accounts is None:
        return back("/", error="accounts are not enabled")
    if role not in ("consumer", "prosumer") or len(password) < 10 or "@" not in email:
        return back(
            "/signup",
            error="Use a valid email, a password of 10 or more characters, a household role.",
        )
    user_id = str(uuid.uuid4())
    wallet = api.platform.keys.ensure(user_key(user_id)).pubkey()
    try:
        api.accounts.register(
            email, password, role, wallet, True, user_id=user_id, status=api.signup_status
        )
    except AuthError as err:
        return back("/signup", error=err.message)
    api.welcome(user_id, wallet, email)
    auditlog.append(api.platform.books, user_id, "auth.register", {"role": role, "via": "page"})
    return login.login(request, email, password)
