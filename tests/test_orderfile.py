"""The order file of `gridtokenx clear`: malformed rows abort, refused rows are listed."""

from __future__ import annotations

from gridtokenx.market.config import MarketConfig, Mechanism, Wheeling
from gridtokenx.market.orderfile import LineError, Rejection, clear_file, report

HEADER = "id,owner,side,quantity_kwh,price_thb_per_kwh,zone\n"


def test_each_kind_of_refusal_is_listed_with_its_line_and_the_rest_clears() -> None:
    text = HEADER + (
        "s1,ann,sell,1,3,north\n"
        "s2,ann,sell,1,3.1,north\n"
        "s3,ann,sell,1,3.2,north\n"  # ann's third live order: over the limit of 2
        "big,bob,buy,1000.001,5,north\n"  # more than 1,000 kWh
        "nil,bob,buy,0,5,north\n"
        "far,cat,buy,1,5,moon\n"  # not a zone of the wheeling matrix
        "b1,bob,buy,1.5,5,north\n"
    )
    config = MarketConfig(
        max_open_orders_per_user=2, wheeling=Wheeling.from_rows([("north", "north", 0)])
    )
    cleared = clear_file(text, config)
    assert cleared.errors == []
    assert [(r.line, r.id, r.code) for r in cleared.rejected] == [
        (4, "s3", "too_many_open_orders"),
        (5, "big", "quantity_too_large"),
        (6, "nil", "quantity_not_positive"),
        (7, "far", "unknown_zone"),
    ]
    assert cleared.outcome is not None
    assert [(t.buy_id, t.sell_id, t.quantity_wh) for t in cleared.outcome.trades] == [
        ("b1", "s1", 1000),
        ("b1", "s2", 500),
    ]
    assert cleared.outcome.clearing_price == 3_100_000
    assert report(cleared.outcome, 100, cleared.rejected)["rejected"][0] == {
        "line": 4,
        "id": "s3",
        "code": "too_many_open_orders",
        "message": "ann already has 2 open orders this epoch",
    }


def test_a_halted_cda_refuses_the_rows_after_the_jump() -> None:
    text = HEADER + (
        "s1,a,sell,1,4,z\nb1,b,buy,1,4,z\ns2,c,sell,1,4.5,z\nb2,d,buy,1,4.5,z\ns3,e,sell,1,4,z\n"
    )
    cleared = clear_file(text, MarketConfig(mechanism=Mechanism.CDA))
    assert cleared.outcome is not None
    assert [(t.buy_id, t.sell_id) for t in cleared.outcome.trades] == [("b1", "s1")]
    assert cleared.outcome.halted == "price moved more than 10% within 60 s"
    assert [(r.line, r.id, r.code) for r in cleared.rejected] == [(6, "s3", "market_halted")]


def test_every_row_refused_clears_an_empty_book() -> None:
    cleared = clear_file(HEADER + "a,x,buy,1,9,z\n", MarketConfig())
    assert cleared.outcome is not None and cleared.outcome.trades == []
    assert cleared.rejected == [
        Rejection(2, "a", "price_out_of_bounds", "price 9000000 uTHB/kWh outside 2000000..8000000")
    ]


def test_a_malformed_file_clears_nothing_and_names_every_bad_line() -> None:
    text = HEADER + (
        "a,x,buy,1,5,z\n"
        "a,y,sell,1,3,z\n"  # the same id again
        "b,y,sell,1.0001,3,z\n"  # finer than a Wh
        "c,y,sell,1,3,z,extra\n"
        "d,y,sell,1,99,z\n"  # well-formed: would be a refusal, but the file is malformed
    )
    cleared = clear_file(text, MarketConfig())
    assert cleared.outcome is None and cleared.rejected == []
    assert cleared.errors == [
        LineError(3, "duplicate_order_id", "id 'a' is already used on line 2"),
        LineError(
            4, "invalid_quantity", "quantity '1.0001' has more precision than 1/1000 of its unit"
        ),
        LineError(5, "extra_fields", "more fields than the header"),
    ]
    assert clear_file(HEADER, MarketConfig()).errors == [
        LineError(1, "no_orders", "the file has no orders")
    ]
