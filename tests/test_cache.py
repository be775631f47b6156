"""The set-up cache: a grid, its flow model and the PV series read back exactly as
computed, keyed by their inputs, robust to a damaged entry; equip's window."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gridtokenx.sim import cache
from gridtokenx.sim.grid import DEFAULT_GRID, feeders
from gridtokenx.sim.households import BatteryConfig, PVConfig, Site, clear_sky_w_per_kwp, equip
from gridtokenx.sim.powerflow import BatchSolver


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One empty cache for this module (the first grid load fills it)."""
    path = tmp_path_factory.mktemp("cache")
    before = os.environ.get("GTX_CACHE_DIR")
    os.environ["GTX_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        del os.environ["GTX_CACHE_DIR"]
    else:
        os.environ["GTX_CACHE_DIR"] = before


def test_a_cached_grid_is_the_loaded_grid(cache_dir: Path) -> None:
    cold = cache.simbench_grid(DEFAULT_GRID)  # computes and stores
    assert cold.net is not None
    (stored,) = cache_dir.glob("simbench-*.npz")
    warm = cache.simbench_grid(DEFAULT_GRID)  # reads back, without pandapower
    assert warm.net is None
    assert warm.households == cold.households
    for name in ("load_p_w", "load_q_var", "sgen_p_w", "net_w"):
        assert np.array_equal(getattr(warm, name), getattr(cold, name)), name
    for name in ("bus_index", "line_index", "load_index", "sgen_index"):
        assert getattr(warm, name) == getattr(cold, name), name
    assert warm.bus_index == tuple(int(b) for b in cold.net.bus.index)
    a, b = BatchSolver(cold).solve_profile(4000, 8), BatchSolver(warm).solve_profile(4000, 8)
    assert np.array_equal(a.v_pu, b.v_pu) and np.array_equal(a.line_loading, b.line_loading)
    # a damaged entry is ignored and replaced
    stored.write_bytes(b"not an npz")
    again = cache.simbench_grid(DEFAULT_GRID)
    assert again.net is not None and np.array_equal(again.load_p_w, cold.load_p_w)
    assert cache.read(stored) is not None


def test_entries_are_keyed_by_their_inputs(cache_dir: Path) -> None:
    site = Site()
    first = clear_sky_w_per_kwp(site, 96 * 3, 15.0, 0.8)
    assert len(list(cache_dir.glob("clearsky-*.npz"))) == 1
    assert np.array_equal(clear_sky_w_per_kwp(site, 96 * 3, 15.0, 0.8), first)
    assert len(list(cache_dir.glob("clearsky-*.npz"))) == 1  # the same inputs: a hit
    tilted = clear_sky_w_per_kwp(site, 96 * 3, 30.0, 0.8)
    assert len(list(cache_dir.glob("clearsky-*.npz"))) == 2
    assert not np.array_equal(tilted, first)
    assert first.max() > 0 and first[:20].max() == 0.0  # night at Bangkok's midnight


def test_equip_until_a_step_is_the_year_cut_there(cache_dir: Path) -> None:
    grid = cache.simbench_grid(DEFAULT_GRID)
    pv, battery = PVConfig(share=0.5), BatteryConfig(share=0.5)
    year, kit = equip(grid, pv, battery, seed=4)
    window, same_kit = equip(grid, pv, battery, seed=4, until=96 * 40)
    assert same_kit == kit and any(kit.battery)
    assert window.steps == 96 * 40
    assert np.array_equal(window.net_w, year.net_w[: 96 * 40])
    assert np.array_equal(window.injections(96 * 39, 96)[0], year.injections(96 * 39, 96)[0])


def test_feeders_are_copies_of_the_grid_a_day_apart(cache_dir: Path) -> None:
    """Three copies side by side: copy 1 solves exactly as the grid itself, copy 2 as the
    grid a day later; meters, buses and loads are renumbered, nothing is shared."""
    grid = cache.simbench_grid(DEFAULT_GRID)
    wide = feeders(grid, 3)
    n, buses = len(grid.households), len(grid.bus_index)
    assert len(wide.households) == 3 * n
    ids = [h.meter_id for h in wide.households]
    assert len(set(ids)) == 3 * n and ids[n] == f"f2-{grid.households[0].meter_id}"
    assert len(set(wide.bus_index)) == 3 * buses
    assert np.array_equal(wide.net_w[:, :n], grid.net_w)
    assert np.array_equal(wide.net_w[:-96, n : 2 * n], grid.net_w[96:])
    solver = BatchSolver(grid)
    flow = BatchSolver(wide).solve(*wide.injections(4000, 4))
    assert np.array_equal(flow.v_pu[:, :buses], solver.solve_profile(4000, 4).v_pu)
    later = solver.solve_profile(4096, 4)
    assert np.array_equal(flow.v_pu[:, buses : 2 * buses], later.v_pu)
    assert np.array_equal(flow.trafo_loading[:, 1], later.trafo_loading[:, 0])
    assert feeders(grid, 1) is grid
