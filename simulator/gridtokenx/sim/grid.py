"""A low-voltage grid with a year of 15-minute profiles: SimBench, offline.

Every load and PV element becomes a household meter at a bus with coordinates. Profiles
are kept in watts (float arrays, physics) with 35,136 quarter-hour steps for a SimBench
year; meters turn them into integer Wh registers.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

DEFAULT_GRID = "1-LV-semiurb4--0-sw"
STEP_S = 900

F64 = NDArray[np.float64]


class GridError(ValueError):
    """A grid code or file that cannot be loaded (with a user-facing message)."""


@dataclass(frozen=True)
class Household:
    meter_id: str
    bus: int  # pandapower bus index
    load: int | None  # pandapower load index, if it consumes
    sgen: int | None  # pandapower sgen (PV) index, if it generates
    zone: str
    x: float
    y: float


@dataclass
class Grid:
    """A grid, its element profiles, and each household's net power (W, positive = drawing
    from the grid) after its PV and battery: what its meter counts."""

    code: str
    net: Any  # pandapowerNet; None for a grid read from the cache (cache.py)
    households: list[Household]
    load_p_w: F64  # [steps, loads]
    load_q_var: F64
    sgen_p_w: F64  # [steps, sgens]
    net_w: F64 = field(default_factory=lambda: np.zeros((0, 0)))  # [steps, households]
    # the net's element indices in order, kept so that a cached grid needs no pandapower
    bus_index: tuple[int, ...] = ()
    line_index: tuple[int, ...] = ()
    load_index: tuple[int, ...] = ()
    sgen_index: tuple[int, ...] = ()
    flow_model: Any = None  # powerflow.FlowModel, when already built

    def __post_init__(self) -> None:
        if self.net is not None and not self.bus_index:
            self.bus_index = tuple(int(i) for i in self.net.bus.index)
            self.line_index = tuple(int(i) for i in self.net.line.index)
            self.load_index = tuple(int(i) for i in self.net.load.index)
            self.sgen_index = tuple(int(i) for i in self.net.sgen.index)
        if self.net_w.size == 0:
            self.net_w = self.household_net(np.zeros((self.steps, len(self.households))))

    @property
    def steps(self) -> int:
        return int(self.load_p_w.shape[0])

    def household_net(self, extra_pv_w: F64, steps: int | None = None) -> F64:
        """Load minus the grid's own PV minus `extra_pv_w`, per household and step (the
        first `steps` steps, or all)."""
        end = self.steps if steps is None else steps
        net = -extra_pv_w[:end]
        loads, sgens = self._load_pos, self._sgen_pos
        # whole columns at once (each household once: the same additions, in the same order)
        with_load = [
            (k, loads[h.load]) for k, h in enumerate(self.households) if h.load is not None
        ]
        with_sgen = [
            (k, sgens[h.sgen]) for k, h in enumerate(self.households) if h.sgen is not None
        ]
        if with_load:
            homes, columns = zip(*with_load, strict=True)
            net[:, list(homes)] += self.load_p_w[:end, list(columns)]
        if with_sgen:
            homes, columns = zip(*with_sgen, strict=True)
            net[:, list(homes)] -= self.sgen_p_w[:end, list(columns)]
        return net

    @property
    def _load_pos(self) -> dict[int, int]:
        return {i: k for k, i in enumerate(self.load_index)}

    @property
    def _sgen_pos(self) -> dict[int, int]:
        return {i: k for k, i in enumerate(self.sgen_index)}

    def injections(self, start: int, steps: int) -> tuple[F64, F64, F64]:
        """(load P, load Q, sgen P) for the power flow, from the households' net power: a
        household's PV and battery act on its load element; PV with no load stays a sgen."""
        end = start + steps
        load_p = self.load_p_w[start:end].copy()
        sgen_p = self.sgen_p_w[start:end].copy()
        load_cols, net_cols, sgen_cols = self._injection_columns
        load_p[:, load_cols] = self.net_w[start:end, net_cols]
        sgen_p[:, sgen_cols] = 0.0
        return load_p, self.load_q_var[start:end], sgen_p

    @cached_property
    def _injection_columns(self) -> tuple[list[int], list[int], list[int]]:
        """Which load columns take which household's net power, and which sgen columns
        that moves onto a load (`injections` is asked once per epoch and candidate)."""
        loads, sgens = self._load_pos, self._sgen_pos
        load_cols, net_cols, sgen_cols = [], [], []
        for k, h in enumerate(self.households):
            if h.load is not None:
                load_cols.append(loads[h.load])
                net_cols.append(k)
                if h.sgen is not None:
                    sgen_cols.append(sgens[h.sgen])
        return load_cols, net_cols, sgen_cols


def _coordinates(net: Any, bus: int) -> tuple[float, float]:
    if "geo" in net.bus and isinstance(net.bus.at[bus, "geo"], str):
        x, y = json.loads(net.bus.at[bus, "geo"])["coordinates"][:2]
        return float(x), float(y)
    return 0.0, 0.0


def load_simbench(code: str = DEFAULT_GRID) -> Grid:
    """Load a SimBench grid and its year of profiles (from the simbench package's data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simbench

        try:
            net = simbench.get_simbench_net(code)
        except Exception as exc:  # simbench raises plain ValueError/KeyError for a bad code
            raise GridError(f"{code!r} is not a SimBench grid code: {exc}") from None
        profiles = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    load_p = profiles[("load", "p_mw")].to_numpy(dtype=np.float64) * 1e6
    load_q = profiles[("load", "q_mvar")].to_numpy(dtype=np.float64) * 1e6
    sgen_p = profiles[("sgen", "p_mw")].to_numpy(dtype=np.float64) * 1e6
    net.trafo["vector_group"] = net.trafo["vector_group"].fillna("Dyn5")
    households = []
    zone_of = _feeders(net)
    pv_at = {int(net.sgen.at[i, "bus"]): int(i) for i in net.sgen.index}
    for n, i in enumerate(net.load.index):
        bus = int(net.load.at[i, "bus"])
        x, y = _coordinates(net, bus)
        households.append(
            Household(f"hh-{n + 1:03d}", bus, int(i), pv_at.pop(bus, None), zone_of[bus], x, y)
        )
    for i in pv_at.values():  # PV without a load at its bus: a generating-only meter
        bus = int(net.sgen.at[i, "bus"])
        x, y = _coordinates(net, bus)
        households.append(Household(f"pv-{len(households) + 1:03d}", bus, None, i, "feeder", x, y))
    return Grid(code, net, households, load_p, load_q, sgen_p)


def _feeders(net: Any) -> dict[int, str]:
    """Zone of each bus: the feeder (line leaving a transformer's LV bus) it hangs on."""
    import pandapower.topology as topology

    graph = topology.create_nxgraph(net, include_trafos=False)
    zone: dict[int, str] = {}
    for lv in net.trafo["lv_bus"]:
        zone[int(lv)] = "station"
        for k, first in enumerate(sorted(graph.neighbors(int(lv)))):
            for bus in _reachable(graph, first, int(lv)):
                zone.setdefault(bus, f"feeder-{k + 1}")
    for bus in net.bus.index:
        zone.setdefault(int(bus), "station")
    return zone


def _reachable(graph: Any, start: int, blocked: int) -> list[int]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.neighbors(todo.pop()):
            if nxt != blocked and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return [int(b) for b in seen]


def load_pandapower(path: str, profiles_csv: str) -> Grid:
    """A user's grid (pandapower JSON) with profiles in CSV: one row per quarter hour,
    columns `load_<index>` (W), optional `load_q_<index>` (var) and `sgen_<index>` (W)."""
    import pandapower as pp
    import pandas as pd

    try:
        net = pp.from_json(path)
    except Exception as exc:
        raise GridError(f"{path} is not a pandapower JSON network: {exc}") from None
    try:
        table = pd.read_csv(profiles_csv)
    except Exception as exc:
        raise GridError(f"cannot read profiles {profiles_csv}: {exc}") from None
    steps = len(table)

    def column(name: str, required: bool) -> F64:
        if name in table:
            return np.asarray(table[name].to_numpy(), dtype=np.float64)
        if required:
            raise GridError(f"{profiles_csv} lacks column {name}")
        return np.zeros(steps)

    load_p = np.stack([column(f"load_{i}", True) for i in net.load.index], axis=1)
    load_q = np.stack([column(f"load_q_{i}", False) for i in net.load.index], axis=1)
    sgen_p = (
        np.stack([column(f"sgen_{i}", False) for i in net.sgen.index], axis=1)
        if len(net.sgen)
        else np.zeros((steps, 0))
    )
    if "vector_group" in net.trafo:
        net.trafo["vector_group"] = net.trafo["vector_group"].fillna("Dyn5")
    zone_of = _feeders(net)
    pv_at = {int(net.sgen.at[i, "bus"]): int(i) for i in net.sgen.index}
    households = []
    for n, i in enumerate(net.load.index):
        bus = int(net.load.at[i, "bus"])
        x, y = _coordinates(net, bus)
        households.append(
            Household(f"hh-{n + 1:03d}", bus, int(i), pv_at.pop(bus, None), zone_of[bus], x, y)
        )
    return Grid(path, net, households, load_p, load_q, sgen_p)


def feeders(grid: Grid, copies: int) -> Grid:
    """`copies` copies of `grid` side by side, each behind its own transformer and source:
    a community larger than one SimBench grid (several feeders of one substation area;
    the medium-voltage grid between them is not modelled). Copy c > 0 has its meters
    named `f<c+1>-<id>`, its element indices shifted past the previous copy's, and the
    original load and PV profiles shifted by c days (wrapping at the year's end), so the
    copies do not draw in lockstep. Needs the grid's flow model (cache.simbench_grid);
    the result has no pandapower net."""
    from gridtokenx.sim.powerflow import FlowModel

    if copies == 1:
        return grid
    model = grid.flow_model
    if model is None:
        raise GridError("feeders need the grid's flow model (load it with cache.simbench_grid)")
    ids = 1 + max(int(v["id"].max()) for v in model.data.values() if len(v))
    data: dict[str, Any] = {}
    for name, table in model.data.items():
        size = len(table)
        out = np.empty(size * copies, dtype=table.dtype)  # keeps PGM's aligned dtype
        for c in range(copies):
            part = out[c * size : (c + 1) * size]
            part[...] = table
            for ref in ("id", "node", "from_node", "to_node"):
                if ref in (table.dtype.names or ()):
                    part[ref] += c * ids
        data[name] = out

    def rows(found: list[int], component: str) -> list[int]:
        size = len(model.data[component]) if component in model.data else 0
        return [r + c * size for c in range(copies) for r in found]

    flow = FlowModel(
        data,
        rows(model.load_rows, "sym_load"),
        rows(model.sgen_rows, "sym_gen"),
        rows(model.node_ids, "node"),
        rows(model.line_ids, "line"),
        rows(model.trafo_ids, "transformer"),
    )

    def stride(index: tuple[int, ...]) -> int:
        return 1 + max(index, default=0)

    bus, load, sgen, line = (
        stride(grid.bus_index),
        stride(grid.load_index),
        stride(grid.sgen_index),
        stride(grid.line_index),
    )
    households = [
        Household(
            h.meter_id if c == 0 else f"f{c + 1}-{h.meter_id}",
            h.bus + c * bus,
            None if h.load is None else h.load + c * load,
            None if h.sgen is None else h.sgen + c * sgen,
            h.zone if c == 0 else f"f{c + 1}-{h.zone}",
            h.x,
            h.y,
        )
        for c in range(copies)
        for h in grid.households
    ]

    def shifted(profile: F64) -> F64:
        return np.concatenate([np.roll(profile, -c * 96, axis=0) for c in range(copies)], axis=1)

    return Grid(
        f"{grid.code} x{copies}",
        None,
        households,
        shifted(grid.load_p_w),
        shifted(grid.load_q_var),
        shifted(grid.sgen_p_w),
        net_w=shifted(grid.net_w),  # the same sums as household_net's, shifted alike
        bus_index=tuple(i + c * bus for c in range(copies) for i in grid.bus_index),
        line_index=tuple(i + c * line for c in range(copies) for i in grid.line_index),
        load_index=tuple(i + c * load for c in range(copies) for i in grid.load_index),
        sgen_index=tuple(i + c * sgen for c in range(copies) for i in grid.sgen_index),
        flow_model=flow,
    )
