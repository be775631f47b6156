"""The `gridtokenx` command as a researcher uses it: real process, real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from services import gridtokenx

ORDERS = """id,owner,side,quantity_kwh,price_thb_per_kwh,zone
b1,alice,buy,1.5,5.00,north
b2,bob,buy,2,4.00,south
s1,carol,sell,1,3.00,north
s2,dave,sell,3,3.80,south
"""
WHEELING = """from_zone,to_zone,thb_per_kwh
north,south,0.30
south,north,0.30
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "wheeling.csv").write_text(WHEELING)
    return tmp_path


@pytest.mark.parametrize("mechanism", ["uniform", "cda", "pay-as-bid"])
def test_clear_json_has_the_documented_fields(files: Path, mechanism: str) -> None:
    done = gridtokenx(
        "clear",
        str(files / "orders.csv"),
        "--mechanism",
        mechanism,
        "--wheeling",
        str(files / "wheeling.csv"),
        "--fee-bps",
        "100",
        "--no-breaker",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("clearing_price_thb_per_kwh", "volume_kwh", "welfare_thb", "trades"):
        assert key in result
    assert result["trades"]
    for trade in result["trades"]:
        for key in ("buy_id", "sell_id", "quantity_kwh", "price_thb_per_kwh", "fee_thb"):
            assert key in trade
        assert "wheeling_thb" in trade
        assert trade["buyer_paid_uthb"] == (
            trade["net_to_seller_uthb"] + trade["fee_uthb"] + trade["wheeling_uthb"]
        )
    assert result["volume_wh"] == sum(t["quantity_wh"] for t in result["trades"])


def test_uniform_zonal_example(files: Path) -> None:
    done = gridtokenx(
        "clear", str(files / "orders.csv"), "--wheeling", str(files / "wheeling.csv"), "--json"
    )
    result = json.loads(done.stdout)
    # Every buyer trades: north's 1.5 kWh at 5.00 and south's 2 kWh at 4.00 (3.5 of 4 kWh).
    assert result["volume_kwh"] == 3.5
    assert result["clearing_price_thb_per_kwh"] is not None


def test_malformed_rows_are_reported_with_line_numbers_and_nothing_cleared(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "id,owner,side,quantity_kwh,price_thb_per_kwh,zone\n"
        "ok,a,buy,1,5,z\n"
        "x,b,hold,1,5,z\n"
        "y,c,sell,one,5,z\n"
        "z,d,sell,1,12,z\n"  # well-formed, refused by the market: not a file error
        "ok,e,sell,1,4,z\n"
    )
    done = gridtokenx("clear", str(bad), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{bad}:line 3: invalid_side: side must be buy or sell",
        f"{bad}:line 4: invalid_quantity: quantity 'one' is not a decimal number",
        f"{bad}:line 6: duplicate_order_id: id 'ok' is already used on line 2",
        "error: 3 malformed row(s); nothing was cleared",
    ]


SELF_CROSSING = """id,owner,side,quantity_kwh,price_thb_per_kwh
b1,alice,buy,1.5,5.00
s1,carol,sell,1,3.00
b2,carol,buy,1,4.00
s2,dave,sell,2,3.80
z1,erin,sell,1,12
"""


def test_refused_rows_are_listed_and_the_rest_is_cleared(tmp_path: Path) -> None:
    """carol's buy would cross her own sell (self_trade) and erin's price is out of
    bounds: both are listed under `rejected`, the others clear at 3.80 THB/kWh."""
    (tmp_path / "orders.csv").write_text(SELF_CROSSING)
    done = gridtokenx("clear", str(tmp_path / "orders.csv"), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rejected"] == [
        {
            "line": 4,
            "id": "b2",
            "code": "self_trade",
            "message": "order would trade with the owner's own order s1",
        },
        {
            "line": 6,
            "id": "z1",
            "code": "price_out_of_bounds",
            "message": "price 12000000 uTHB/kWh outside 2000000..8000000",
        },
    ]
    assert [(t["buy_id"], t["sell_id"], t["quantity_wh"]) for t in result["trades"]] == [
        ("b1", "s1", 1000),
        ("b1", "s2", 500),
    ]
    assert result["clearing_price_uthb_per_kwh"] == 3_800_000
    assert result["orders"] == {"b1": "filled", "s1": "filled", "s2": "expired"}
    text = gridtokenx("clear", str(tmp_path / "orders.csv"))
    assert text.returncode == 0
    assert text.stdout.splitlines()[-3:] == [
        "2 order(s) refused by the market:",
        "  line 4 b2: self_trade: order would trade with the owner's own order s1",
        "  line 6 z1: price_out_of_bounds: price 12000000 uTHB/kWh outside 2000000..8000000",
    ]


def test_missing_file_and_missing_columns_are_messages(tmp_path: Path) -> None:
    done = gridtokenx("clear", str(tmp_path / "nope.csv"))
    assert done.returncode == 2 and "cannot read order file" in done.stderr
    (tmp_path / "cols.csv").write_text("id,side\n1,buy\n")
    done = gridtokenx("clear", str(tmp_path / "cols.csv"))
    assert done.returncode == 2 and "missing_columns" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("which", ["clearing", "cda"])
def test_bench_prints_json(which: str) -> None:
    done = gridtokenx("bench", which, "--orders", "2000", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"orders", "seconds", "orders_per_s", "peak_rss_mb"} <= set(result)
    assert result["orders"] == 2000


def test_wire_vectors_command_prints_the_checked_in_file() -> None:
    done = gridtokenx("wire", "vectors")
    checked_in = Path(__file__).resolve().parents[1] / "docs" / "vectors" / "wire-v1.json"
    assert json.loads(done.stdout) == json.loads(checked_in.read_text())


def test_up_runs_the_system_and_readings_reach_the_hub(tmp_path: Path) -> None:
    """`make run`'s command, bounded: embedded broker, firmware meters, hub, market demo."""
    from services import free_port

    from gridtokenx.hub.store import HubStore, connect

    http_port = free_port()
    done = gridtokenx(
        "up",
        "--meters",
        "2",
        "--data",
        str(tmp_path),
        "--duration",
        "40",
        "--hub-epoch-s",
        "8",
        "--market-epoch-s",
        "5",
        "--http-port",
        str(http_port),
        "--api-port",
        str(free_port()),
        "--mqtt-port",
        str(free_port()),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"http://127.0.0.1:{http_port}/" in done.stdout
    assert "everything stopped" in done.stdout
    store = HubStore(connect(f"sqlite:///{tmp_path / 'hub.db'}"))
    for meter in store.meters():
        seqs = [r["seq"] for r in store.readings_of(meter.meter_id)]
        assert seqs and seqs[-1] == 1, (meter.meter_id, seqs)  # from the very first reading
    assert store.counts()["accepted"] >= 4 and len(store.counts()) == 1
    store.engine.dispose()
    # the hub's batches went through the platform to the embedded ledger, and the ledger
    # reconciles with the platform's books (the keystore key is the demo's, from DATA)
    key = os.environ.get("GTX_KEYSTORE_KEY") or (tmp_path / "secrets" / "keystore.key").read_text()
    audited = gridtokenx(
        "audit", "--data", str(tmp_path / "platform"), env={"GTX_KEYSTORE_KEY": key}
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    report = json.loads(audited.stdout)
    assert report["checked"]["batches"] >= 1, report
    # the market cleared and settled epochs meanwhile (printed as they went)
    assert "settlement transactions" in done.stdout
    assert report["checked"].get("settlements", 0) >= 1, report
    assert "demo login" in done.stdout
