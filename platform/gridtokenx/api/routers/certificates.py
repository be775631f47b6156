"""Renewable-energy certificates: a holder's list, transfer and retire; an admin's issue,
validate and revoke."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from gridtokenx import auditlog, custody
from gridtokenx.adapters import ledger_index, queries
from gridtokenx.api.deps import AdminDep, PlatformDep, UserDep, pubkey
from gridtokenx.api.schemas import (
    CERTIFICATE_CURSOR_PATTERN,
    CURSOR_HELP,
    NEXT_CURSOR,
    CertificateOut,
    CertifyIn,
    CertTransferIn,
    CertTransferSignedIn,
    PreparedOut,
    RetireIn,
    RetireSignedIn,
    RevokeIn,
    errors,
)
from gridtokenx.errors import Conflict
from gridtokenx.keynames import user_key
from gridtokenx.services.site import Platform

router = APIRouter(
    prefix="/api/v1",
    tags=["certificates"],
    responses=errors(401, 403, 404, 409, 413, 422, 429, 503),
)


def cert_json(c: Any) -> dict[str, Any]:
    return {
        "mint": str(c.mint),
        "meter_id": c.meter_id,
        "period": c.period,
        "wh": c.wh,
        "from_wh": c.from_wh,
        "to_wh": c.to_wh,
        "source": c.source,
        "status": c.status,
        "holder": str(c.holder) if c.holder else None,
    }


def under_lock(platform: Platform, action: Callable[[], Any]) -> dict[str, Any]:
    """Run a registry action under the ledger lock (its CertificateError maps at the edge)."""
    with platform.lock:
        return cert_json(action())


def custodial_key(platform: Platform, user_id: str) -> Keypair:
    name = user_key(user_id)
    if name not in platform.keys:
        raise Conflict("external_wallet", "sign with your wallet: not custodial")
    return platform.keys.get(name)


def indexed_json(row: dict[str, Any]) -> dict[str, Any]:
    """A `ledger_certificates` row in `cert_json`'s shape."""
    out = {k: row[k] for k in ("mint", "meter_id", "period", "from_wh", "to_wh", "source")}
    return {
        **out,
        "wh": row["to_wh"] - row["from_wh"],
        "status": row["status"],
        "holder": row["holder"],
    }


@router.get("/certificates", response_model=list[CertificateOut], responses=NEXT_CURSOR)
def my_certificates(
    claims: UserDep,
    platform: PlatformDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=CERTIFICATE_CURSOR_PATTERN, description=CURSOR_HELP)
    ] = None,
) -> list[dict[str, Any]]:
    """The certificates the caller's wallet holds, newest issue first by (pos, mint), from the
    certificate index caught up with the chain first (so it answers what the chain holds);
    the next page's cursor is the `Next-Cursor` header, absent on the last page."""
    ledger_index.catch_up_certificates(platform.books, platform.ledger)
    before = None
    if cursor is not None:
        pos, mint = cursor.split(".", 1)
        before = (int(pos), mint)
    rows = queries.certificates_of_holder(platform.books, claims.wallet, limit + 1, before)
    page = rows[:limit]
    if len(rows) > limit:
        response.headers["Next-Cursor"] = f"{page[-1]['pos']}.{page[-1]['mint']}"
    return [indexed_json(r) for r in page]


@router.post("/certificates/{mint}/transfer", response_model=CertificateOut)
def transfer_certificate(
    mint: str, body: CertTransferIn, claims: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    key, to = custodial_key(platform, claims.user_id), pubkey(body.to_wallet, "to_wallet")
    address: Pubkey = pubkey(mint, "mint")
    return under_lock(platform, lambda: platform.certificates.transfer(address, key, to))


@router.post("/certificates/{mint}/retire", response_model=CertificateOut)
def retire_certificate(
    mint: str, body: RetireIn, claims: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    key, address = custodial_key(platform, claims.user_id), pubkey(mint, "mint")
    return under_lock(
        platform, lambda: platform.certificates.retire(address, key, body.beneficiary)
    )


@router.post("/admin/certificates", status_code=201, response_model=CertificateOut)
def issue_certificate(body: CertifyIn, actor: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    out = cert_json(platform.certify(body.meter_id, body.period))
    auditlog.append(platform.books, actor, "admin.certificate_issue", {"mint": out["mint"]})
    return out


@router.post("/admin/certificates/{mint}/validate", response_model=CertificateOut)
def validate_certificate(mint: str, actor: AdminDep, platform: PlatformDep) -> dict[str, Any]:
    address = pubkey(mint, "mint")
    auditlog.append(platform.books, actor, "admin.certificate_validate", {"mint": mint})
    return under_lock(platform, lambda: platform.certificates.validate(address))


@router.post("/admin/certificates/{mint}/revoke", response_model=CertificateOut)
def revoke_certificate(
    mint: str, body: RevokeIn, actor: AdminDep, platform: PlatformDep
) -> dict[str, Any]:
    address = pubkey(mint, "mint")
    auditlog.append(platform.books, actor, "admin.certificate_revoke", {"mint": mint})
    return under_lock(platform, lambda: platform.certificates.revoke(address, body.reason))


# -- self-custody holders: the platform prepares, the wallet's own key signs (custody.py) --------
def _external(platform: Platform, wallet: str) -> Pubkey:
    if platform.keys.name_of(wallet) is not None:
        raise Conflict("custodial_wallet", "a custodial wallet transfers and retires directly")
    return pubkey(wallet, "wallet")


@router.post("/certificates/{mint}/retire/prepare", response_model=PreparedOut)
def prepare_retire(
    mint: str, body: RetireIn, claims: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    holder, address = _external(platform, claims.wallet), pubkey(mint, "mint")
    with platform.lock:
        ixs = platform.certificates.retire_ixs(address, holder, body.beneficiary)
        return {"message": custody.prepare(platform.ledger, ixs)}


@router.post("/certificates/{mint}/retire/signed", response_model=CertificateOut)
def retire_signed(
    mint: str, body: RetireSignedIn, claims: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    holder, address = _external(platform, claims.wallet), pubkey(mint, "mint")

    def act() -> Any:
        ixs = platform.certificates.retire_ixs(address, holder, body.beneficiary)
        custody.submit(platform.ledger, ixs, holder, body.message, body.signature)
        return platform.certificates.get(address)

    return under_lock(platform, act)


@router.post("/certificates/{mint}/transfer/prepare", response_model=PreparedOut)
def prepare_transfer(
    mint: str, body: CertTransferIn, claims: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    holder, address = _external(platform, claims.wallet), pubkey(mint, "mint")
    to = pubkey(body.to_wallet, "to_wallet")
    with platform.lock:
        ixs = platform.certificates.transfer_ixs(address, holder, to)
        return {"message": custody.prepare(platform.ledger, ixs)}


@router.post("/certificates/{mint}/transfer/signed", response_model=CertificateOut)
def transfer_signed(
    mint: str, body: CertTransferSignedIn, claims: UserDep, platform: PlatformDep
) -> dict[str, Any]:
    holder, address = _external(platform, claims.wallet), pubkey(mint, "mint")
    to = pubkey(body.to_wallet, "to_wallet")

    def act() -> Any:
        registry = platform.certificates
        ixs = registry.transfer_ixs(address, holder, to)
        custody.submit(
            platform.ledger, ixs, holder, body.message, body.signature, [registry.validator]
        )
        return registry.get(address)

    return under_lock(platform, act)
