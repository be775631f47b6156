"""Market parameters and the wheeling-charge matrix between grid zones."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gridtokenx.market.errors import WheelingError
from gridtokenx.units import UnitError, price_from_thb_per_kwh

NO_BREAKER = 10**12


class Mechanism(StrEnum):
    UNIFORM = "uniform"
    CDA = "cda"
    PAY_AS_BID = "pay-as-bid"


@dataclass(frozen=True)
class Wheeling:
    """Wheeling charges in uTHB per kWh from a seller's zone to a buyer's zone.

    With no entries at all, every zone may trade with every other at no charge. Once any
    entry is given, only the listed zones exist, a zone trades with itself at no charge
    unless listed, and a pair of distinct zones that is not listed cannot trade.
    """

    rates: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return not self.rates

    @property
    def zones(self) -> frozenset[str]:
        return frozenset(z for pair in self.rates for z in pair)

    def knows(self, zone: str) -> bool:
        return self.open or zone in self.zones

    def rate(self, seller_zone: str, buyer_zone: str) -> int | None:
        """The charge for energy from seller_zone to buyer_zone, or None if not allowed."""
        if self.open:
            return 0
        found = self.rates.get((seller_zone, buyer_zone))
        if found is None and seller_zone == buyer_zone and seller_zone in self.zones:
            return 0
        return found

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, int]]) -> Wheeling:
        rates: dict[tuple[str, str], int] = {}
        for source, sink, rate in rows:
            if rate < 0:
                raise WheelingError("invalid_wheeling", f"negative wheeling {source}->{sink}")
            rates[(source, sink)] = rate
        return cls(rates)

    @classmethod
    def from_csv(cls, text: str) -> Wheeling:
        """Parse `from_zone,to_zone,thb_per_kwh` rows (header required)."""
        reader = csv.DictReader(io.StringIO(text))
        needed = {"from_zone", "to_zone", "thb_per_kwh"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise WheelingError(
                "invalid_wheeling", "wheeling CSV needs a header from_zone,to_zone,thb_per_kwh"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                source, sink = row["from_zone"].strip(), row["to_zone"].strip()
                if not source or not sink:
                    raise UnitError("invalid_zone", "empty zone")
                rows.append((source, sink, price_from_thb_per_kwh(row["thb_per_kwh"])))
            except (UnitError, AttributeError) as exc:
                raise WheelingError("invalid_wheeling", f"line {line}: {exc}") from None
        return cls.from_rows(rows)


@dataclass(frozen=True)
class MarketConfig:
    """Parameters of one market. Defaults are the design documents' values."""

    mechanism: Mechanism = Mechanism.UNIFORM
    fee_bps: int = 100
    max_quantity_wh: int = 1_000_000
    min_price: int = 2_000_000
    max_price: int = 8_000_000
    max_open_orders_per_user: int = 50
    wheeling: Wheeling = field(default_factory=Wheeling)
    breaker_bps: int = 1_000  # NO_BREAKER switches the breakers off
    breaker_window_ms: int = 60_000
    reference_epochs: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.fee_bps <= 10_000:
            raise ValueError("fee_bps must be within 0..10000")
        if not 0 < self.min_price <= self.max_price:
            raise ValueError("price bounds must satisfy 0 < min_price <= max_price")
        if self.max_quantity_wh <= 0 or self.max_open_orders_per_user <= 0:
            raise ValueError("limits must be positive")
