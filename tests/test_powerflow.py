"""Grid physics: SimBench loading, batch AC power flow against pandapower, limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from services import gridtokenx

from gridtokenx.sim.grid import DEFAULT_GRID, Grid, GridError, load_simbench
from gridtokenx.sim.powerflow import BatchSolver, runpp_step

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid() -> Grid:
    return load_simbench(DEFAULT_GRID)


def test_simbench_grid_and_its_year_of_profiles(grid: Grid) -> None:
    assert grid.steps == 35_136  # a leap year of quarter hours
    assert len(grid.households) >= len(grid.net.load)
    assert len({h.meter_id for h in grid.households}) == len(grid.households)
    assert all(h.bus in grid.net.bus.index for h in grid.households)
    assert any(h.sgen is not None for h in grid.households)  # someone has PV
    assert all(h.x != 0.0 for h in grid.households)  # coordinates for the grid map


@pytest.mark.parametrize("step", [0, 14_000, 20_000, 33_000])
def test_batch_solver_matches_pandapower(grid: Grid, step: int) -> None:
    solver = BatchSolver(grid)
    ours = solver.solve_profile(step, 1)
    reference = runpp_step(grid, step)
    assert np.abs(ours.v_pu - reference.v_pu).max() < 1e-4
    assert np.abs(ours.line_loading - reference.line_loading).max() < 0.1
    # power-grid-model rates a transformer by apparent power, pandapower by current
    assert np.abs(ours.trafo_loading - reference.trafo_loading).max() < 1.0


def test_limits_are_detected(grid: Grid) -> None:
    solver = BatchSolver(grid)
    noon = 14_000
    load_p, load_q = grid.load_p_w[noon : noon + 1], grid.load_q_var[noon : noon + 1]
    normal = solver.solve(load_p, load_q, grid.sgen_p_w[noon : noon + 1])
    assert not normal.violations().any()
    # the feeder's PV at 1.5 MW each, at noon with no load: overvoltage
    flood = solver.solve(load_p * 0, load_q * 0, np.full((1, len(grid.net.sgen)), 1.5e6))
    assert flood.violations().all() and flood.v_pu.max() > 1.10


def test_unknown_grid_code_is_a_clear_error() -> None:
    with pytest.raises(GridError):
        load_simbench("not-a-grid")
    done = gridtokenx("bench", "powerflow", "--grid", "nope", "--json")
    assert done.returncode == 2 and "not a SimBench grid code" in done.stderr


def test_bench_powerflow_prints_its_figures() -> None:
    done = gridtokenx("bench", "powerflow", "--steps", "96", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["steps"] == 96 and {"seconds", "ms_per_step"} <= set(result)
