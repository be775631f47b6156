"""The API's request bodies (and, below, its answers): the contract clients generate code from.

Integers are strict (`true`, `"5"` and `5.0` are not quantities); strings carry the bounds and
patterns the services rely on, so a body that passes here is well-formed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

HEX = r"^([0-9a-fA-F]{2})*$"
BASE58 = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"  # a Solana public key
EPOCH_MAX = 2**62  # epochs and other integers fit a signed 64-bit column


class HubIn(BaseModel):
    hub_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    token: str = Field(min_length=24, max_length=200)


class UserIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._ -]{1,64}$")


class MeterIn(BaseModel):
    meter_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    public_key: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    owner: str = Field(pattern=BASE58, description="the owner's wallet (base58)")


class BatchIn(BaseModel):
    epoch: int = Field(strict=True, ge=0)
    header: str = Field(pattern=HEX, max_length=2_000_000)
    hub_signature: str = Field(pattern=r"^[0-9a-fA-F]{128}$")
    readings: list[tuple[str, str]] = Field(max_length=500_000)


class SignaturesIn(BaseModel):
    signatures: list[str] = Field(max_length=10_000)


class RegisterIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$")
    password: str = Field(min_length=10, max_length=200)
    role: str = Field(default="consumer", pattern="^(consumer|prosumer)$")
    wallet: str | None = Field(
        default=None, pattern=BASE58, description="an external wallet instead of a custodial one"
    )


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class WalletLoginIn(BaseModel):
    wallet: str = Field(pattern=BASE58)
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    signature: str = Field(min_length=80, max_length=100, description="base58 Ed25519 signature")


class OrderIn(BaseModel):
    side: str = Field(pattern="^(buy|sell)$")
    quantity_wh: int = Field(strict=True, gt=0, le=10**9)
    price: int = Field(strict=True, gt=0, le=10**12, description="micro-THB per kWh")
    zone: str = Field(default="default", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    tif: str = Field(default="GFE", pattern="^(GFE|IOC|FOK)$")


class TopUpIn(BaseModel):
    user_id: str = Field(max_length=36)
    micro_thb: int = Field(strict=True, gt=0, le=10**15)
    reference: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")


class CertifyIn(BaseModel):
    meter_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    period: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,32}$")


class CertTransferIn(BaseModel):
    to_wallet: str = Field(pattern=BASE58)


class RetireIn(BaseModel):
    beneficiary: str = Field(min_length=1, max_length=200)


B64 = r"^[A-Za-z0-9+/=]*$"


class Signed(BaseModel):
    """A message the platform prepared, signed by the household's own wallet key."""

    message: str = Field(pattern=B64, min_length=4, max_length=4096)
    signature: str = Field(pattern=r"^[A-Za-z0-9+/=]{86,88}$")


class AllowanceIn(BaseModel):
    grx_wh: int = Field(strict=True, ge=0, le=2**63, description="GRX the delegate may move")
    thb_micro: int = Field(strict=True, ge=0, le=2**63, description="THB it may move")


class AllowanceSignedIn(AllowanceIn, Signed):
    pass


class RetireSignedIn(RetireIn, Signed):
    pass


class CertTransferSignedIn(CertTransferIn, Signed):
    pass


class RevokeIn(BaseModel):
    reason: str = Field(pattern=r"^[A-Za-z0-9 ._,:-]{1,200}$")


class ParametersIn(BaseModel):
    fee_bps: int | None = Field(strict=True, default=None, ge=0, le=10_000)
    min_price: int | None = Field(strict=True, default=None, gt=0, le=10**12)
    max_price: int | None = Field(strict=True, default=None, gt=0, le=10**12)
    max_quantity_wh: int | None = Field(strict=True, default=None, gt=0, le=10**9)


class HaltIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


class ProposalIn(BaseModel):
    kind: str = Field(pattern=r"^(pause|resume|rotate-oracle|rotate-governance|fee)$")
    args: dict[str, str] = Field(
        default_factory=dict,
        max_length=4,
        description="party and key (a rotation), bps (the fee); nothing otherwise",
    )
    signers: list[str] = Field(
        min_length=1,
        max_length=3,
        description="the parties whose keys the message names: platform, grid-operator, auditor",
    )


class ProposalSignatureIn(BaseModel):
    signer: str = Field(pattern=BASE58, description="the signing party's public key")
    signature: str = Field(
        pattern=r"^[A-Za-z0-9+/=]{86,88}$", description="base64 of its signature of `message`"
    )


# -- answers ---------------------------------------------------------------------------------
# Answers allow fields beyond those named here, so a service may add one without breaking
# the contract; the named ones are promised.


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorOut(BaseModel):
    """Every refusal: a stable machine-readable code and a human message."""

    code: str
    message: str


class TokensOut(Out):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class RegisteredOut(Out):
    user_id: str
    wallet: str
    custodial: bool
    status: str = Field(description="pending (may not trade until approved) or active")


class NonceOut(Out):
    nonce: str
    message: str


class MeOut(Out):
    user_id: str
    email: str | None
    role: str
    wallet: str
    custodial: bool
    status: str


class TransactionOut(Out):
    signature: str
    memos: list[str]


class WalletOut(Out):
    wallet: str
    grx_wh: int
    thb_micro: int
    frozen: bool
    custodial: bool
    delegate: str = Field(description="the key a self-custody wallet approves")
    allowance_grx_wh: int = Field(description="GRX the delegate may still move (self-custody)")
    allowance_thb_micro: int = Field(description="THB the delegate may still move")
    transactions: list[TransactionOut] = Field(description="newest first, a page of them")
    next_cursor: str | None = Field(
        default=None, description="the `cursor` of the next (older) transactions; None on the last"
    )


class TradeOut(Out):
    """A cleared trade, with the amounts settled (uTHB, Wh) and the rates they came from."""

    epoch: int
    trade_id: str
    buy_id: str
    sell_id: str
    buyer: str = Field(description="the buyer's wallet")
    seller: str = Field(description="the seller's wallet")
    wh: int
    buyer_paid: int
    seller_net: int
    fee: int
    wheeling: int
    price: int | None = Field(description="uTHB per kWh")
    wheeling_rate: int | None
    fee_bps: int | None


class ReadingOut(Out):
    """A meter reading as the hub's batch holds it (the energy registers, Wh)."""

    meter_id: str
    hub_id: str
    epoch: int
    idx: int = Field(description="its place in the hub's batch")
    seq: int | None
    import_wh: int | None
    export_wh: int | None


class StatementOut(Out):
    """A household's statement (docs/statement.md): `gridtokenx verify FILE` checks it."""

    format: str
    user_id: str
    wallet: str
    grx_account: str
    thb_account: str
    period: dict[str, Any]
    meters: dict[str, str]
    hubs: dict[str, str]
    batches: dict[str, dict[str, str]]
    opening: dict[str, dict[str, Any]]
    epochs: list[dict[str, Any]]


class CurrentEpochOut(Out):
    epoch: int
    ends_at: float
    seconds_left: float
    mechanism: str
    halted: str | None


class EpochOut(Out):
    epoch: int
    state: str
    clearing_price: int | None
    volume_wh: int
    trades: int
    transactions: list[str]
    closed_at: int


class EpochDetailOut(EpochOut):
    trades_list: list[dict[str, Any]]


class BookOut(Out):
    epoch: int
    depth: dict[str, dict[str, list[list[int]]]]  # zone -> bids|asks -> [price, Wh]


class CandleOut(Out):
    epoch: int
    price: int
    volume_wh: int


class OrderOut(Out):
    order_id: str
    user_id: str
    epoch: int
    seq: int
    side: str
    quantity_wh: int
    price: int
    zone: str
    tif: str
    status: str
    filled_wh: int
    created_at: int


class CertificateOut(Out):
    mint: str
    meter_id: str
    period: str
    wh: int
    from_wh: int
    to_wh: int
    source: str
    status: str
    holder: str | None


class HubAddedOut(Out):
    hub_id: str


class MeterAddedOut(Out):
    meter_id: str


class UserAddedOut(Out):
    name: str
    wallet: str


class UserStatusOut(Out):
    user_id: str
    status: str


class StatusOut(Out):
    id: str
    status: str


class SignatureOut(Out):
    transaction: str


class ParametersOut(Out):
    mechanism: str
    fee_bps: int
    min_price: int
    max_price: int
    max_quantity_wh: int


class HaltOut(Out):
    halted: str | None


class AuditEntryOut(Out):
    seq: int
    ts: int
    actor: str
    action: str
    detail: Any
    hash: str


class AuditOut(Out):
    entries: list[AuditEntryOut]
    broken_at: int | None
    next_cursor: str | None = None  # the `cursor` of the next (older) page; None on the last
    verified_to: int = Field(
        default=0, description="the chain is verified up to this seq (besides the page's links)"
    )


class UserOut(Out):
    user_id: str
    email: str | None
    role: str
    wallet: str
    custodial: bool
    status: str
    created_at: int


class OutcomeOut(Out):
    state: str
    messages: list[str]
    memos: list[str]
    transactions: list[str]


class TopologyOut(Out):
    code: str
    buses: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    households: list[dict[str, Any]]


class GridStateOut(Out):
    epoch: int | None


class HealthOut(Out):
    status: str


class ReadyOut(Out):
    status: str
    grx_mint: str
    checks: dict[str, str]  # dependency -> ok | not configured


WHY = {
    401: "no valid credentials (no_token, bad_token, token_expired, login_revoked, ...)",
    403: "credentials that do not allow this (not_admin, suspended, wrong_role, ...)",
    404: "the named thing does not exist (or is not yours)",
    409: "clashes with the current state (market_halted, email_taken, ledger_*, ...)",
    413: "the request body is over its limit (body_too_large)",
    422: "invalid input (invalid_request, malformed_body) or refused by a rule",
    429: "rate limited (rate_limited, login_locked, order_rate_limited); see Retry-After",
    503: "this instance runs without the part asked for (no_market, no_accounts)",
}


CURSOR_PATTERN = r"^[0-9]{1,18}$"  # within a BIGINT, so no database overflows on one
CURSOR_HELP = "opaque: the next_cursor of the page before; absent for the first page"
# an order's key (epoch.seq.order_id); order ids are "o-" and hex
ORDER_CURSOR_PATTERN = r"^[0-9]{1,18}\.[0-9]{1,18}\.[A-Za-z0-9-]{1,64}$"
# a trade's key (epoch.trade_id), a user's (created_at.user_id), a reading's (epoch.idx.hub_id)
TRADE_CURSOR_PATTERN = r"^[0-9]{1,18}\.[A-Za-z0-9_-]{1,64}$"
REGISTRY_CURSOR_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"  # a hub's or meter's id (HubIn, MeterIn)
USER_CURSOR_PATTERN = r"^[0-9]{1,18}\.[A-Za-z0-9_-]{1,36}$"
READING_CURSOR_PATTERN = r"^[0-9]{1,18}\.[0-9]{1,9}\.[A-Za-z0-9_.:-]{1,64}$"
# a certificate's key (pos.mint): its issue's place in the chain, then its base58 mint
CERTIFICATE_CURSOR_PATTERN = r"^[0-9]{1,18}\.[1-9A-HJ-NP-Za-km-z]{32,44}$"
NEXT_CURSOR: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "Next-Cursor": {
                "description": "the `cursor` of the next page; absent on the last page",
                "schema": {"type": "string"},
            }
        }
    }
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route or router: these statuses, each with the error schema."""
    return {s: {"model": ErrorOut, "description": WHY[s]} for s in statuses}


class ProposalOut(Out):
    id: int
    kind: str
    args: dict[str, str]
    authority: str
    signers: list[str]
    message: str
    signatures: dict[str, str]
    status: str
    transaction: str | None
    missing: list[str]


class ProposalsOut(Out):
    proposals: list[ProposalOut]
    next_cursor: str | None = None  # the `cursor` of the next (older) page; None on the last


class PreparedOut(Out):
    message: str = Field(description="base64 of the message the wallet key signs")
