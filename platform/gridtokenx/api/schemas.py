"""The API's request bodies (and, below, its answers): the contract clients generate code from.

Integers are strict (`true`, `"5"` and `5.0` are not quantities); strings carry the bounds and
patterns the services rely on, so a body that passes here is well-formed.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

HEX = r"^([0-9a-fA-F]{2})*$"
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
    owner: str = Field(min_length=32, max_length=44, description="the owner's wallet (base58)")


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
        default=None,
        min_length=32,
        max_length=44,
        description="an external wallet instead of a custodial one",
    )


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class WalletLoginIn(BaseModel):
    wallet: str = Field(min_length=32, max_length=44)
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
    to_wallet: str = Field(min_length=32, max_length=44)


class RetireIn(BaseModel):
    beneficiary: str = Field(min_length=1, max_length=200)


class RevokeIn(BaseModel):
    reason: str = Field(pattern=r"^[A-Za-z0-9 ._,:-]{1,200}$")


class ParametersIn(BaseModel):
    fee_bps: int | None = Field(strict=True, default=None, ge=0, le=10_000)
    min_price: int | None = Field(strict=True, default=None, gt=0, le=10**12)
    max_price: int | None = Field(strict=True, default=None, gt=0, le=10**12)
    max_quantity_wh: int | None = Field(strict=True, default=None, gt=0, le=10**9)


class HaltIn(BaseModel):
    reason: str = Field(min_length=1, max_length=200)
