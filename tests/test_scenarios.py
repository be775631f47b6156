"""Research scenarios: KPI definitions on hand-computed cases, conservation of energy and
money over a whole scenario, reproducibility, reports, comparison and the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from services import gridtokenx

from gridtokenx.scenarios import kpis, report
from gridtokenx.scenarios.config import Scenario, ScenarioError, from_dict
from gridtokenx.scenarios.run import run

RETAIL, FEED_IN = 4_000_000, 2_000_000


def test_kpis_on_a_hand_computed_two_household_case() -> None:
    # A exports 10 kWh and sells 4 of them at 3 THB/kWh (1% fee): receives 11.88 THB.
    # B imports 6 kWh, buys those 4 kWh paying 12 THB, and 2 kWh from the grid at 4 THB.
    a = kpis.Totals(
        import_wh=0,
        export_wh=10_000,
        bought_wh=0,
        sold_wh=4_000,
        paid_uthb=0,
        received_uthb=11_880_000,
    )
    b = kpis.Totals(
        import_wh=6_000,
        export_wh=0,
        bought_wh=4_000,
        sold_wh=0,
        paid_uthb=12_000_000,
        received_uthb=0,
    )
    ha, hb = kpis.household(a, RETAIL, FEED_IN), kpis.household(b, RETAIL, FEED_IN)
    assert ha["bill_feed_in_only_uthb"] == -20_000_000  # 10 kWh x 2 THB earned
    assert ha["bill_p2p_uthb"] == -(6 * 2_000_000 + 11_880_000)  # 6 kWh fed in + P2P income
    assert ha["savings_vs_feed_in_only_uthb"] == 3_880_000
    assert ha["self_consumption"] == 0.4 and ha["self_sufficiency"] is None
    assert hb["bill_grid_only_uthb"] == 24_000_000
    assert hb["bill_p2p_uthb"] == 2 * 4_000_000 + 12_000_000
    assert hb["savings_vs_grid_only_uthb"] == 4_000_000
    assert hb["self_sufficiency"] == pytest.approx(4 / 6)
    c = kpis.community([a, b], RETAIL, FEED_IN)
    assert c["p2p_volume_wh"] == 4_000 and c["p2p_share"] == pytest.approx(4 / 6)
    assert c["self_consumption"] == 0.4
    assert c["savings_vs_feed_in_only_uthb"] == 3_880_000 + 4_000_000


def test_gini() -> None:
    assert kpis.gini([5.0, 5.0, 5.0]) == 0.0
    assert kpis.gini([0.0, 0.0, 0.0, 12.0]) == pytest.approx(0.75)  # (n-1)/n for one taker
    assert kpis.gini([]) == 0.0


def test_scenario_files_are_checked() -> None:
    with pytest.raises(ScenarioError) as err:
        from_dict({"mechanism": "barter"})
    assert err.value.code == "bad_mechanism"
    with pytest.raises(ScenarioError) as err:
        from_dict({"tariffs": {"retail": 1}})
    assert err.value.code == "unknown_key"
    assert from_dict({"households": 7}, days=2).days == 2


SMALL = Scenario(name="small", households=12, days=1, seed=5, pv_share=0.5)


def test_a_scenario_conserves_energy_and_money_and_is_reproducible(tmp_path: Path) -> None:
    first = run(SMALL)
    checks = first.checks
    assert checks["grx_minted_equals_exported"] and checks["grx_minted_wh"] > 0
    assert checks["thb_conserved"] and checks["escrow_empty"]
    assert checks["readings_rejected"] == 0
    bought = sum(h["bought_wh"] for h in first.households)
    sold = sum(h["sold_wh"] for h in first.households)
    assert bought == sold == sum(first.series["p2p_wh"]) > 0
    assert first.community["p2p_volume_wh"] == bought
    assert len(first.series["epoch"]) == 96
    second = run(SMALL)  # the same scenario and seed: the same trades and KPIs
    assert second.trades_digest == first.trades_digest
    assert second.community == first.community
    other = run(Scenario(name="small", households=12, days=1, seed=6, pv_share=0.5))
    assert other.trades_digest != first.trades_digest
    page = report.write(first, tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["versions"]["gridtokenx"] and summary["scenario"]["seed"] == 5
    for name in ("price_volume.png", "daily_balance.png", "voltage_envelope.png", "savings.png"):
        assert (tmp_path / "report" / name).stat().st_size > 5_000
    assert "self-sufficiency" in page.read_text()


def test_readings_in_threads_give_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """`READING_THREADS` (1 by default: in the runner's thread) changes only where the
    readings are signed and checked, not what comes of them."""
    from gridtokenx.scenarios import run as runner

    inline = run(SMALL)
    monkeypatch.setattr(runner, "READING_THREADS", 3)
    threaded = run(SMALL)
    assert threaded.trades_digest == inline.trades_digest
    assert threaded.community == inline.community
    assert threaded.checks == inline.checks
    assert threaded.households == inline.households


def test_cli_runs_compares_and_benchmarks(tmp_path: Path) -> None:
    files = []
    for mechanism in ("uniform", "cda", "pay-as-bid"):
        path = tmp_path / f"{mechanism}.toml"
        path.write_text(
            f'name = "{mechanism}"\nhouseholds = 6\ndays = 1\nmechanism = "{mechanism}"\nseed = 2\n'
        )
        files.append(str(path))
    done = gridtokenx("scenario", "compare", *files, "--out", str(tmp_path / "cmp"), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["table"]
    assert len(table[0]) == 4 and (tmp_path / "cmp" / "comparison.png").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("households = [")
    done = gridtokenx("scenario", "run", str(bad))
    assert done.returncode == 2 and "bad_toml" in done.stderr and "Traceback" not in done.stderr
    done = gridtokenx(
        "bench", "scenario", "--households", "4", "--days", "1", "--json", timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["epochs"] == 96 and figures["seconds_per_day"] > 0
    assert 0 < figures["setup_s"] < figures["seconds"]
    assert figures["seconds_per_day"] == pytest.approx(
        figures["seconds"] - figures["setup_s"], abs=0.002
    )
    assert (figures["grid"], figures["households"]) == ("1-LV-semiurb5--0-sw", 4)
    assert figures["start_day"] == 160


@pytest.mark.parametrize(("days", "start"), [(1, 160), (205, 160), (206, 159), (365, 0), (366, 0)])
def test_bench_scenario_starts_early_enough_to_end_within_the_year(days: int, start: int) -> None:
    """`bench scenario --days 365` runs the whole year (from day 0), not past its end."""
    from gridtokenx.bench import start_day

    assert start_day(160, days, 365) == start
