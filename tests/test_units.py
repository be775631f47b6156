"""Units: exact decimal parsing and the rounding rule that makes every receipt add up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridtokenx.units import (
    UnitError,
    price_from_thb_per_kwh,
    receipt,
    uthb_from_thb,
    wh_from_kwh,
)


def test_parse_exact_decimals() -> None:
    assert wh_from_kwh("1.5") == 1500
    assert wh_from_kwh(" 0.001 ") == 1
    assert price_from_thb_per_kwh("3.25") == 3_250_000
    assert price_from_thb_per_kwh("2.000001") == 2_000_001
    assert uthb_from_thb("10") == 10_000_000


@pytest.mark.parametrize("text", ["1.0005", "abc", "", "nan", "inf", "1e400000"])
def test_parse_refuses_inexact_or_garbage(text: str) -> None:
    with pytest.raises(UnitError):
        wh_from_kwh(text)


@given(
    quantity=st.integers(1, 10**9),
    price=st.integers(0, 10**8),
    wheeling=st.integers(0, 10**7),
    fee_bps=st.integers(0, 10_000),
)
def test_buyer_paid_is_seller_plus_fee_plus_wheeling(
    quantity: int, price: int, wheeling: int, fee_bps: int
) -> None:
    r = receipt(quantity, price, wheeling, fee_bps)
    assert r.buyer_paid == r.net_to_seller + r.fee + r.wheeling
    # each part is the floor of its exact value, never more than it
    assert r.energy_value * 1000 <= quantity * price < (r.energy_value + 1) * 1000
    assert r.fee * 10_000 <= r.energy_value * fee_bps
    assert 0 <= r.fee <= r.energy_value
    assert r.wheeling * 1000 <= quantity * wheeling


def test_rounding_example_from_readme() -> None:
    # 1.234 kWh at 3.333333 THB/kWh, wheeling 0.25 THB/kWh, 1% fee
    r = receipt(1234, 3_333_333, 250_000, 100)
    assert (r.energy_value, r.fee, r.wheeling) == (4_113_332, 41_133, 308_500)
    assert (r.buyer_paid, r.net_to_seller) == (4_421_832, 4_072_199)
