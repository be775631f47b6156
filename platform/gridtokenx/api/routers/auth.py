"""Sign-up, password and wallet sign-in, token refresh and logout, and who I am."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from solders.signature import Signature

from gridtokenx import auditlog
from gridtokenx.accounts import SELF_SERVICE_ROLES, Accounts, AuthError, Tokens
from gridtokenx.api.deps import AccountsDep, ApiDep, IpDep, PlatformDep, UserDep, pubkey
from gridtokenx.api.schemas import (
    BASE58,
    LoginIn,
    MeOut,
    NonceOut,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    TokensOut,
    WalletLoginIn,
    errors,
)
from gridtokenx.errors import InvalidInput
from gridtokenx.keynames import user_key

router = APIRouter(prefix="/api/v1", tags=["auth"], responses=errors(413, 422, 429, 503))


def token_json(tokens: Tokens) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "bearer",
        "expires_in": tokens.expires_in,
    }


@router.post("/auth/register", status_code=201, response_model=RegisteredOut, responses=errors(409))
def register(
    body: RegisterIn, api: ApiDep, accounts: AccountsDep, platform: PlatformDep
) -> dict[str, Any]:
    if body.role not in SELF_SERVICE_ROLES:
        raise InvalidInput("bad_role", "sign up as consumer or prosumer")
    user_id = str(uuid.uuid4())
    if body.wallet is None:
        wallet, custodial = platform.keys.ensure(user_key(user_id)).pubkey(), True
    else:
        wallet, custodial = pubkey(body.wallet, "wallet"), False
    status = api.signup_status
    accounts.register(
        body.email, body.password, body.role, wallet, custodial, user_id=user_id, status=status
    )
    auditlog.append(platform.books, user_id, "auth.register", {"role": body.role, "status": status})
    status = api.welcome(user_id, wallet, body.email)  # the KYC step may approve it
    return {"user_id": user_id, "wallet": str(wallet), "custodial": custodial, "status": status}


@router.post("/auth/login", response_model=TokensOut, responses=errors(401, 403))
def login(body: LoginIn, accounts: AccountsDep, platform: PlatformDep, ip: IpDep) -> dict[str, Any]:
    try:
        tokens = accounts.login(body.email, body.password, ip)
    except AuthError:
        auditlog.append(platform.books, body.email[:64], "auth.login_failed", {"ip": ip})
        raise
    auditlog.append(platform.books, body.email[:64], "auth.login", {})
    return token_json(tokens)


@router.post("/auth/refresh", response_model=TokensOut, responses=errors(401, 403))
def refresh(body: RefreshIn, accounts: AccountsDep) -> dict[str, Any]:
    return token_json(accounts.refresh(body.refresh_token))


@router.post("/auth/logout", status_code=204, response_class=Response)
def logout(body: RefreshIn, accounts: AccountsDep) -> Response:
    accounts.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/auth/nonce", response_model=NonceOut)
def nonce(wallet: Annotated[str, Query(pattern=BASE58)], accounts: AccountsDep) -> dict[str, str]:
    n = accounts.nonce(wallet)
    return {"nonce": n, "message": Accounts.nonce_message(n).decode()}


@router.post("/auth/wallet", response_model=TokensOut, responses=errors(401, 403, 404))
def wallet_login(body: WalletLoginIn, accounts: AccountsDep) -> dict[str, Any]:
    try:
        signature = bytes(Signature.from_string(body.signature))
    except ValueError:
        raise InvalidInput("invalid_request", "signature is not base58") from None
    return token_json(accounts.wallet_login(body.wallet, body.nonce, signature))


@router.get("/me", response_model=MeOut, responses=errors(401, 403))
def me(claims: UserDep, accounts: AccountsDep) -> dict[str, Any]:
    found = accounts.user(claims.user_id) or {}
    return {k: found[k] for k in ("user_id", "email", "role", "wallet", "custodial", "status")}
