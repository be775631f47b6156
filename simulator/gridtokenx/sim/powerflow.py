"""AC power flow over many steps at once: power-grid-model's batch Newton-Raphson.

A year of quarter hours is one batch calculation; pandapower's per-step `runpp` (about
30 ms a step) stays available as the reference it is tested against.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridtokenx.sim.grid import F64, Grid

VOLTAGE_LIMITS = (0.90, 1.10)  # EN 50160
LOADING_LIMIT = 100.0  # percent


@dataclass(frozen=True)
class FlowResult:
    """Per step: bus voltages (p.u., in pandapower bus order), line and trafo loading (%)."""

    v_pu: F64  # [steps, buses]
    line_loading: F64  # [steps, lines]
    trafo_loading: F64  # [steps, trafos]
    # active power each trafo delivers into the LV grid (W, negative when PV feeds back)
    trafo_p_w: F64 = field(default_factory=lambda: np.zeros((0, 0)))

    def violations(
        self, limits: tuple[float, float] = VOLTAGE_LIMITS, loading: float = LOADING_LIMIT
    ) -> NDArray[np.bool_]:
        """Which steps break a voltage or loading limit."""
        v = (self.v_pu < limits[0]) | (self.v_pu > limits[1])
        over = np.concatenate([self.line_loading, self.trafo_loading], axis=1) > loading
        return np.asarray(v.any(axis=1) | over.any(axis=1), dtype=np.bool_)


@dataclass(frozen=True)
class FlowModel:
    """A grid as power-grid-model input (numpy structured arrays per component) and, for
    each pandapower element in index order, its row there: what the batch solver needs,
    built from the pandapower net once and storable without it (see cache.py)."""

    data: dict[str, Any]  # component name -> structured array
    load_rows: list[int]
    sgen_rows: list[int]
    node_ids: list[int]
    line_ids: list[int]
    trafo_ids: list[int]

    @classmethod
    def from_net(cls, net: Any) -> FlowModel:
        from power_grid_model_io.converters import PandaPowerConverter

        converter = PandaPowerConverter(system_frequency=50.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, extra = converter.load_input_data(net)
        return cls(
            {str(getattr(k, "value", k)): v for k, v in data.items()},
            _rows(extra, data, "sym_load", "load", "const_power"),
            _rows(extra, data, "sym_gen", "sgen", None),
            _ids(extra, data, "node", "bus", len(net.bus)),
            _ids(extra, data, "line", "line", len(net.line)),
            _ids(extra, data, "transformer", "trafo", len(net.trafo)),
        )


def _rows(extra: Any, data: Any, component: str, table: str, name: str | None) -> list[int]:
    """For each pandapower element (by index order), its row in the PGM component."""
    if component not in data:
        return []
    by_index = {}
    for row, pgm_id in enumerate(data[component]["id"]):
        ref = extra[int(pgm_id)]["id_reference"]
        if ref["table"] == table and (name is None or ref.get("name") == name):
            by_index[ref["index"]] = row
    return [by_index[k] for k in sorted(by_index)]


def _ids(extra: Any, data: Any, component: str, table: str, count: int) -> list[int]:
    by_index = {}
    for row, pgm_id in enumerate(data[component]["id"]):
        ref = extra[int(pgm_id)]["id_reference"]
        if ref["table"] == table:
            by_index[ref["index"]] = row
    return [by_index[k] for k in sorted(by_index)][:count]


class BatchSolver:
    """Builds the power-grid-model of a grid once; solves any number of steps."""

    def __init__(self, grid: Grid) -> None:
        from power_grid_model import ComponentType, PowerGridModel

        self.grid = grid
        model = grid.flow_model if grid.flow_model is not None else FlowModel.from_net(grid.net)
        self.data = {ComponentType(k): v for k, v in model.data.items()}
        self.model = PowerGridModel(self.data)
        self.load_rows = model.load_rows
        self.sgen_rows = model.sgen_rows
        self.node_ids = model.node_ids
        self.line_ids = model.line_ids
        self.trafo_ids = model.trafo_ids

    def solve(self, load_p_w: F64, load_q_var: F64, sgen_p_w: F64, threads: int = 2) -> FlowResult:
        """Solve every row (step) of the given injections."""
        from power_grid_model import CalculationMethod, ComponentType, DatasetType, initialize_array

        steps = load_p_w.shape[0]
        loads = self.data[ComponentType.sym_load]
        upd_load = initialize_array(DatasetType.update, ComponentType.sym_load, (steps, len(loads)))
        upd_load["id"] = loads["id"]
        upd_load["status"] = 1
        upd_load["p_specified"] = 0.0
        upd_load["q_specified"] = 0.0
        upd_load["p_specified"][:, self.load_rows] = load_p_w
        upd_load["q_specified"][:, self.load_rows] = load_q_var
        update = {ComponentType.sym_load: upd_load}
        if self.sgen_rows:
            gens = self.data[ComponentType.sym_gen]
            upd_gen = initialize_array(
                DatasetType.update, ComponentType.sym_gen, (steps, len(gens))
            )
            upd_gen["id"] = gens["id"]
            upd_gen["status"] = 1
            upd_gen["p_specified"] = 0.0
            upd_gen["q_specified"] = 0.0
            upd_gen["p_specified"][:, self.sgen_rows] = sgen_p_w
            update[ComponentType.sym_gen] = upd_gen
        out = self.model.calculate_power_flow(
            update_data=update,
            calculation_method=CalculationMethod.newton_raphson,
            threading=threads,
            output_component_types={
                ComponentType.node: ["u_pu"],
                ComponentType.line: ["loading"],
                ComponentType.transformer: ["loading", "p_to"],
            },
        )
        return FlowResult(
            v_pu=out[ComponentType.node]["u_pu"][:, self.node_ids],
            line_loading=out[ComponentType.line]["loading"][:, self.line_ids] * 100.0,
            trafo_loading=out[ComponentType.transformer]["loading"][:, self.trafo_ids] * 100.0,
            trafo_p_w=-out[ComponentType.transformer]["p_to"][:, self.trafo_ids],
        )

    def solve_profile(self, start: int = 0, steps: int | None = None) -> FlowResult:
        """The grid's own profiles from `start` for `steps` quarter hours."""
        count = self.grid.steps - start if steps is None else steps
        return self.solve(*self.grid.injections(start, count))


def runpp_step(grid: Grid, step: int) -> FlowResult:
    """One step with pandapower's Newton-Raphson (the reference, about 30 ms)."""
    import pandapower as pp

    net = copy.deepcopy(grid.net)
    load_p, load_q, sgen_p = grid.injections(step, 1)
    net.load["p_mw"] = load_p[0] / 1e6
    net.load["q_mvar"] = load_q[0] / 1e6
    if len(net.sgen):
        net.sgen["p_mw"] = sgen_p[0] / 1e6
        net.sgen["q_mvar"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, algorithm="nr", numba=False)
    return FlowResult(
        v_pu=net.res_bus["vm_pu"].to_numpy()[None, :],
        line_loading=net.res_line["loading_percent"].to_numpy()[None, :],
        trafo_loading=net.res_trafo["loading_percent"].to_numpy()[None, :],
    )
