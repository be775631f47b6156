"""Integer units for energy and money, and the one rounding rule for trade value.

Energy is counted in whole watt-hours (Wh), as meters count it (OBIS 1.8.0 / 2.8.0).
Money is counted in micro-THB (1 THB = 1,000,000 uTHB). Prices are uTHB per kWh.
Floats never carry money or energy; they appear only when formatting output.

Rounding rule (docs/units.md): every product is floored once, and the seller's net is
the remainder, so that for every trade

    buyer_paid == net_to_seller + platform_fee + wheeling      (exactly, in uTHB)

- energy_value = floor(quantity_wh * price_per_kwh / 1000)
- platform_fee = floor(energy_value * fee_bps / 10000)   (paid out of the energy value)
- wheeling     = floor(quantity_wh * wheeling_per_kwh / 1000)
- buyer_paid   = energy_value + wheeling
- net_to_seller = energy_value - platform_fee
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

WH_PER_KWH = 1_000
UTHB_PER_THB = 1_000_000
BPS_DENOMINATOR = 10_000
MAX_DECIMAL = Decimal(10**12)


class UnitError(ValueError):
    """A decimal text that is not an exact, non-negative amount of the unit asked for."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _scaled(text: str, scale: int, what: str) -> int:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise UnitError(f"invalid_{what}", f"{what} {text!r} is not a decimal number") from None
    if not value.is_finite() or abs(value) > MAX_DECIMAL:
        raise UnitError(f"invalid_{what}", f"{what} {text!r} is not a number within ±10^12")
    scaled = value * scale
    if scaled != scaled.to_integral_value():
        raise UnitError(
            f"invalid_{what}", f"{what} {text!r} has more precision than 1/{scale} of its unit"
        )
    return int(scaled)


def wh_from_kwh(text: str) -> int:
    """Parse a decimal kWh text ('1.5') into Wh (1500); more than 3 decimals is an error."""
    return _scaled(text, WH_PER_KWH, "quantity")


def price_from_thb_per_kwh(text: str) -> int:
    """Parse a decimal THB/kWh text ('3.25') into uTHB/kWh (3_250_000)."""
    return _scaled(text, UTHB_PER_THB, "price")


def uthb_from_thb(text: str) -> int:
    """Parse a decimal THB amount into uTHB."""
    return _scaled(text, UTHB_PER_THB, "amount")


def energy_value(quantity_wh: int, price_uthb_per_kwh: int) -> int:
    """Value of an energy quantity at a price, floored to the uTHB."""
    return quantity_wh * price_uthb_per_kwh // WH_PER_KWH


def platform_fee(value_uthb: int, fee_bps: int) -> int:
    """The platform's fee out of an energy value, floored to the uTHB."""
    return value_uthb * fee_bps // BPS_DENOMINATOR


@dataclass(frozen=True, slots=True)
class Receipt:
    """The itemised money of one trade, all in uTHB."""

    energy_value: int
    fee: int
    wheeling: int

    @property
    def buyer_paid(self) -> int:
        return self.energy_value + self.wheeling

    @property
    def net_to_seller(self) -> int:
        return self.energy_value - self.fee


def receipt(
    quantity_wh: int, price_uthb_per_kwh: int, wheeling_uthb_per_kwh: int, fee_bps: int
) -> Receipt:
    """Itemise a trade by the rounding rule in this module's docstring."""
    value = energy_value(quantity_wh, price_uthb_per_kwh)
    return Receipt(
        energy_value=value,
        fee=platform_fee(value, fee_bps),
        wheeling=energy_value(quantity_wh, wheeling_uthb_per_kwh),
    )


def kwh(wh: int) -> float:
    """Wh as kWh for display only (exact for up to 15 significant digits)."""
    return wh / WH_PER_KWH


def thb(uthb: int) -> float:
    """uTHB as THB for display only."""
    return uthb / UTHB_PER_THB
