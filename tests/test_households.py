"""What is behind the meters: pvlib PV, cloudiness, batteries, zones, user grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridtokenx.sim.grid import STEP_S, GridError, load_pandapower, load_simbench
from gridtokenx.sim.households import (
    BatteryConfig,
    PVConfig,
    Site,
    clear_sky_w_per_kwp,
    cloudiness,
    equip,
    self_consumption,
)
from gridtokenx.sim.powerflow import BatchSolver

pytestmark = pytest.mark.slow


def test_clear_sky_pv_in_bangkok() -> None:
    w = clear_sky_w_per_kwp(Site(), 96 * 3, tilt_deg=15, pr=0.8)  # three January days
    day = w[:96]
    assert day[:20].max() == 0 and day[-16:].max() == 0  # night (before 05:00, after 20:00)
    assert 44 <= int(np.argmax(day)) <= 52  # peak around 11:00-13:00 local time
    kwh_per_kwp = day.sum() * STEP_S / 3600 / 1000
    assert 4.0 < kwh_per_kwp < 7.0


def test_cloudiness_is_seeded_and_bounded() -> None:
    a = cloudiness(5000, 0.25, np.random.default_rng(7))
    b = cloudiness(5000, 0.25, np.random.default_rng(7))
    assert (a == b).all() and a.min() >= 0 and a.max() <= 1
    assert abs(a.mean() - 0.75) < 0.05


def test_battery_for_self_consumption_conserves_energy() -> None:
    cfg = BatteryConfig(capacity_wh=5_000, power_w=2_500, efficiency=0.9)
    rng = np.random.default_rng(1)
    net = rng.normal(0, 2_000, 2_000)
    out, soc = self_consumption(net, cfg)
    hours = STEP_S / 3600
    charged = np.clip(out - net, 0, None)  # extra drawn to charge
    discharged = np.clip(net - out, 0, None)
    assert (charged <= cfg.power_w + 1e-9).all() and (discharged <= cfg.power_w + 1e-9).all()
    assert soc.min() >= -1e-9 and soc.max() <= cfg.capacity_wh + 1e-9
    stored = charged.sum() * hours * cfg.efficiency - discharged.sum() * hours
    assert stored == pytest.approx(soc[-1], abs=1e-6)
    assert np.abs(out).sum() < np.abs(net).sum()  # less exchanged with the grid


def test_equip_is_reproducible_and_the_grid_stays_solvable() -> None:
    grid = load_simbench()
    a, equipment = equip(grid, PVConfig(share=0.5), BatteryConfig(share=0.5), seed=4)
    b, _ = equip(grid, PVConfig(share=0.5), BatteryConfig(share=0.5), seed=4)
    assert (a.net_w == b.net_w).all()
    assert a.net_w.shape == (grid.steps, len(grid.households))
    assert 0 < sum(1 for k in equipment.pv_kwp if k) < len(grid.households)
    assert any(equipment.battery)
    noon = 96 * 160 + 44
    assert a.net_w[noon].sum() < grid.net_w[noon].sum()  # more PV, less drawn at noon
    flow = BatchSolver(a).solve_profile(noon, 4)
    assert np.isfinite(flow.v_pu).all()
    assert {h.zone for h in grid.households} >= {"feeder-1", "feeder-2"}


def test_a_users_pandapower_grid_with_csv_profiles(tmp_path: Path) -> None:
    import pandapower as pp

    net = pp.create_empty_network()
    mv = pp.create_bus(net, 20.0)
    lv = pp.create_bus(net, 0.4)
    far = pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, mv)
    pp.create_transformer(net, mv, lv, "0.4 MVA 20/0.4 kV")
    pp.create_line(net, lv, far, 0.3, "NAYY 4x150 SE")
    pp.create_load(net, far, p_mw=0.002)
    pp.create_load(net, lv, p_mw=0.001)
    pp.create_sgen(net, far, p_mw=0.0)
    pp.to_json(net, str(tmp_path / "grid.json"))
    (tmp_path / "profiles.csv").write_text(
        "load_0,load_1,sgen_0\n" + "\n".join(f"{1000 + k},{500},{k * 100}" for k in range(8))
    )
    grid = load_pandapower(str(tmp_path / "grid.json"), str(tmp_path / "profiles.csv"))
    assert grid.steps == 8 and len(grid.households) == 2
    assert grid.net_w[7, 0] == pytest.approx(1007 - 700)  # load minus its bus's PV
    flow = BatchSolver(grid).solve_profile()
    assert flow.v_pu.shape == (8, 3)
    (tmp_path / "bad.csv").write_text("load_0\n1\n")
    with pytest.raises(GridError):
        load_pandapower(str(tmp_path / "grid.json"), str(tmp_path / "bad.csv"))
