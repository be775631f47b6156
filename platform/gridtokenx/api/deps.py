"""What a handler needs, as FastAPI dependencies: the parts of this instance, who is calling
(a user's access token, an admin, a hub), the rate limits, and small parsers of path values.

The parts live in one `Api` on `app.state.api`, made by the factory in `app.py`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request
from solders.pubkey import Pubkey
from starlette.requests import HTTPConnection

from gridtokenx import auditlog
from gridtokenx.accounts import AccountNotFound, Accounts, Claims
from gridtokenx.adapters.events import Fanout
from gridtokenx.adapters.ratelimit import Limiter, MemoryLimiter
from gridtokenx.api.errors import LEDGER_ERRORS
from gridtokenx.api.limits import ClientAddress
from gridtokenx.errors import (
    CodedError,
    Forbidden,
    InvalidInput,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from gridtokenx.kyc import KycCheck
from gridtokenx.ledger.keystore import KeystoreError
from gridtokenx.services import suspension
from gridtokenx.services.site import Platform
from gridtokenx.services.trading import Trading

# design defaults, per minute; GTX_LIMIT_PER_USER / GTX_LIMIT_PER_IP change them (the API
# benchmark raises them: all its clients share one address)
USER_LIMIT, IP_LIMIT = 100, 300


@dataclass
class Api:
    """The parts of one platform instance the edge serves."""

    platform: Platform
    admin_token: str | None = None
    trading: Trading | None = None
    accounts: Accounts | None = None
    limiter: Limiter = field(default_factory=MemoryLimiter)
    demo_grant: int = 0  # micro-THB given to each new sign-up (demo only)
    user_limit: int = USER_LIMIT
    ip_limit: int = IP_LIMIT
    fanout: Fanout = field(default_factory=Fanout)
    addresses: ClientAddress = field(default_factory=ClientAddress)
    # approve each sign-up at once (the demo, `gridtokenx up`); otherwise a new account is
    # `pending` with its GRX and THB frozen until an operator (or the KYC step) approves it
    auto_approve: bool = False
    kyc: KycCheck | None = None  # the configurable KYC step (`platform run --kyc-url`)

    @property
    def signup_status(self) -> str:
        return "active" if self.auto_approve else "pending"

    def set_user_status(self, user_id: str, action: str, actor: str, by: str = "operator") -> str:
        """Suspend or approve a user; audited.

        Suspend: the account is marked suspended and its logins revoked first (its orders
        are refused from that moment), then its open orders are cancelled and refunded, then
        its GRX and THB are frozen on the chain through the co-signed freeze authority. A
        co-signer down or refusing does not undo the suspension: the freeze is recorded as
        pending (audit `<by>.user_freeze_pending`) and retried by every epoch and recovery
        pass (`suspension.freeze_pending`).

        Approve: the chain first (the thaw, which a co-signer checks against the operator's
        record), then the account row, then the demo grant (a frozen account takes no mint).
        """
        if self.accounts is None:
            raise Unavailable("no_accounts", "user accounts are not enabled here")
        found = self.accounts.user(user_id)
        if found is None:
            raise AccountNotFound("no_user", user_id)
        wallet = Pubkey.from_string(str(found["wallet"]))
        prefix = "admin" if by == "operator" else by
        if action == "suspend":
            self.accounts.set_status(user_id, "suspended")
            auditlog.append(
                self.platform.books, actor, f"{prefix}.user_suspend", {"user_id": user_id}
            )
            if self.trading is not None:
                suspension.cancel_orders(self.trading, user_id)
            suspension.freeze(self.platform, user_id, wallet, actor, by)
            return "suspended"
        with self.platform.lock:
            try:
                self.platform.dep.open_wallet(wallet, by=by)
            except KeystoreError as err:  # no co-signer for freezes here
                raise Unavailable("cosigner_unavailable", str(err)) from None
        self.accounts.set_status(user_id, "active")
        suspension.pay_held(self.platform, wallet)  # refunds a freeze held back
        auditlog.append(self.platform.books, actor, f"{prefix}.user_approve", {"user_id": user_id})
        self._grant(user_id, wallet)
        return "active"

    def _grant(self, user_id: str, wallet: Pubkey) -> None:
        """The demo's THB for a sign-up, once it is approved (a frozen account takes no
        mint): after its status is set; idempotent by its reference. A refused top-up
        leaves the approval standing and is audited (`demo.grant_failed`)."""
        if self.demo_grant <= 0:
            return
        try:
            with self.platform.lock:
                self.platform.dep.top_up(wallet, self.demo_grant, f"demo-grant-{user_id}")
        except (CodedError, KeystoreError, *LEDGER_ERRORS) as err:
            detail = {"user_id": user_id, "reason": str(getattr(err, "code", "error"))}
            auditlog.append(self.platform.books, "demo", "demo.grant_failed", detail)

    def welcome(self, user_id: str, wallet: Pubkey, email: str = "") -> str:
        """Open the new user's wallet, frozen until approved: at once under --auto-approve
        (recorded `by auto`), or when the KYC step passes it; its status after."""
        if self.auto_approve:
            with self.platform.lock:
                self.platform.dep.open_wallet(wallet, by="auto")
            detail = {"user_id": user_id}
            auditlog.append(self.platform.books, "auto", "auto.user_approve", detail)
            self._grant(user_id, wallet)
            return "active"
        with self.platform.lock:
            self.platform.dep.open_wallet(wallet, approve=False)
        if self.kyc is None:
            return "pending"
        result = self.kyc.check(user_id, email, str(wallet))
        if not result.passed:
            detail = {"user_id": user_id, "reason": result.reason, "reference": result.reference}
            auditlog.append(self.platform.books, "kyc", "kyc.pending", detail)
            return "pending"
        try:
            status = self.set_user_status(user_id, "approve", "kyc", by="kyc")
        except (CodedError, *LEDGER_ERRORS) as err:  # a co-signer down or refusing, the
            # chain refusing, or no co-signer configured: an operator approves later
            detail = {"user_id": user_id, "reason": err.code, "reference": result.reference}
            auditlog.append(self.platform.books, "kyc", "kyc.pending", detail)
            return "pending"
        detail = {"user_id": user_id, "url": self.kyc.url, "reference": result.reference}
        auditlog.append(self.platform.books, "kyc", "kyc.passed", detail)
        return status

    def over_user_limit(self, user_id: str) -> RateLimited | None:
        """One request of this user counted; its refusal when over the per-user limit."""
        wait = self.limiter.hit(f"user:{user_id}", self.user_limit)
        if not wait:
            return None
        return RateLimited("rate_limited", f"{self.user_limit} requests a minute", wait)

    def over_address_limit(self, address: str) -> RateLimited | None:
        """One request from this address counted; its refusal when over the limit."""
        wait = self.limiter.hit(f"ip:{address}", self.ip_limit)
        if not wait:
            return None
        return RateLimited("rate_limited", "too many requests from this address", wait)

    def client_ip(self, conn: HTTPConnection) -> str:
        peer = conn.client.host if conn.client else "-"
        # no peer address, a local address with no port: the Unix socket of this platform's
        # fronts (0600: no one else can connect), which say who their peer was
        server = conn.scope.get("server")
        front = conn.client is None and server is not None and server[1] is None
        return self.addresses.of(peer, conn.headers.get("x-forwarded-for"), front)


def api_of(conn: HTTPConnection) -> Api:
    return conn.app.state.api  # type: ignore[no-any-return]


async def get_api(conn: HTTPConnection) -> Api:
    # trivial dependencies are coroutines: FastAPI runs a plain function in a worker thread,
    # a hop per dependency per request
    return api_of(conn)


ApiDep = Annotated[Api, Depends(get_api)]


async def get_platform(api: ApiDep) -> Platform:
    return api.platform


async def get_accounts(api: ApiDep) -> Accounts:
    if api.accounts is None:
        raise Unavailable("no_accounts", "user accounts are not enabled here")
    return api.accounts


async def get_trading(api: ApiDep) -> Trading:
    if api.trading is None:
        raise Unavailable("no_market", "the market is not enabled here")
    return api.trading


PlatformDep = Annotated[Platform, Depends(get_platform)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
TradingDep = Annotated[Trading, Depends(get_trading)]


def bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("no_token", "Authorization: Bearer <token> is required")
    return authorization.removeprefix("Bearer ")


def get_user(
    api: ApiDep, accounts: AccountsDep, authorization: Annotated[str | None, Header()] = None
) -> Claims:
    """The caller's claims from a valid, unrevoked access token, within its rate limit."""
    claims = accounts.verify(bearer(authorization))
    refused = api.over_user_limit(claims.user_id)
    if refused is not None:
        raise refused
    return claims


async def get_trader(
    api: ApiDep, accounts: AccountsDep, authorization: Annotated[str | None, Header()] = None
) -> Claims:
    """An order's caller, on the event loop with no database read: the token's signature and
    expiry, and the rate limit, here; its login and account are checked with the whole group
    commit it joins (`Trading._admit`), by the same rules and codes as `get_user`."""
    claims = accounts.decode(bearer(authorization))
    refused = api.over_user_limit(claims.user_id)
    if refused is not None:
        raise refused
    return claims


def get_admin(api: ApiDep, authorization: Annotated[str | None, Header()] = None) -> str:
    """The acting admin: the operator token, or a user whose role is admin."""
    token = bearer(authorization)
    if api.admin_token is not None and hmac.compare_digest(token, api.admin_token):
        return "admin-token"
    if api.accounts is not None and token.count(".") == 2:
        claims = api.accounts.verify(token)
        if claims.role == "admin":
            return claims.user_id
    raise Forbidden("not_admin", "an admin is required")


def get_hub(platform: PlatformDep, authorization: Annotated[str | None, Header()] = None) -> str:
    return platform.hub_of_token(bearer(authorization))


def get_ip(api: ApiDep, request: Request) -> str:
    return api.client_ip(request)


UserDep = Annotated[Claims, Depends(get_user)]
TraderDep = Annotated[Claims, Depends(get_trader)]
AdminDep = Annotated[str, Depends(get_admin)]
HubDep = Annotated[str, Depends(get_hub)]
IpDep = Annotated[str, Depends(get_ip)]


def unhex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidInput("invalid_request", f"{what} is not hex") from None


def pubkey(text: str, what: str) -> Pubkey:
    try:
        return Pubkey.from_string(text)
    except ValueError:
        raise InvalidInput("invalid_request", f"{what} is not a base58 public key") from None
