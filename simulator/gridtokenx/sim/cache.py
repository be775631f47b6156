"""The set-up every scenario run would repeat, computed once and kept on disk.

Reading a SimBench grid and its year of profiles from the simbench package's CSV files,
converting it for the power flow and computing the clear-sky PV series take seconds (and
the pandapower import alone a few); a run with a warm cache reads them back in a fraction
of a second. Entries are keyed by a hash of everything that determines them (the inputs
and the versions of the packages that computed them), so a new simbench or pvlib makes a
new entry rather than reusing a stale one. Arrays are stored exactly (`.npz`, no pickle),
metadata as JSON; an entry is written to a temporary file and renamed, so a crash or a
concurrent run never leaves half an entry.

The directory is `$GTX_CACHE_DIR`, else `$XDG_CACHE_HOME/gridtokenx`, else
`~/.cache/gridtokenx`. Deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from gridtokenx.sim.grid import Grid, Household, load_simbench

FORMAT = 1  # bump when what an entry holds changes


def cache_dir() -> Path:
    explicit = os.environ.get("GTX_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gridtokenx"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def entry(kind: str, inputs: dict[str, Any], packages: tuple[str, ...]) -> Path:
    """The file of the entry `kind` for these inputs and these packages' versions."""
    key = {"format": FORMAT, "kind": kind, "inputs": inputs}
    key["versions"] = {p: _version(p) for p in packages}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / f"{kind}-{digest}.npz"


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The arrays and the metadata of an entry, or None if it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except (OSError, ValueError, KeyError):
        return None
    meta = arrays.pop("__meta__", None)
    if meta is None:
        return None
    return arrays, json.loads(bytes(meta).decode())


def write(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Store an entry atomically; a cache that cannot be written is only slower."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as out:
            packed = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            savez: Any = np.savez  # its stub reads **arrays as its allow_pickle flag
            savez(out, __meta__=packed, **arrays)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


GRID_PACKAGES = ("simbench", "pandapower", "power-grid-model", "power-grid-model-io")


def simbench_grid(code: str) -> Grid:
    """`load_simbench(code)` with its power-flow model, from the cache when it is there.
    A cached grid has no pandapower net (`net` is None): everything a scenario needs
    (profiles, households, element indices, the flow model) is stored."""
    from gridtokenx.sim.powerflow import FlowModel

    path = entry("simbench", {"code": code}, GRID_PACKAGES)
    found = read(path)
    if found is not None:
        arrays, meta = found
        model = FlowModel(
            {k.removeprefix("pgm/"): v for k, v in arrays.items() if k.startswith("pgm/")},
            *(meta[k] for k in ("load_rows", "sgen_rows", "node_ids", "line_ids", "trafo_ids")),
        )
        return Grid(
            code,
            None,
            [Household(**h) for h in meta["households"]],
            arrays["load_p_w"],
            arrays["load_q_var"],
            arrays["sgen_p_w"],
            bus_index=tuple(meta["bus_index"]),
            line_index=tuple(meta["line_index"]),
            load_index=tuple(meta["load_index"]),
            sgen_index=tuple(meta["sgen_index"]),
            flow_model=model,
        )
    grid = load_simbench(code)
    grid.flow_model = model = FlowModel.from_net(grid.net)
    arrays = {
        "load_p_w": grid.load_p_w,
        "load_q_var": grid.load_q_var,
        "sgen_p_w": grid.sgen_p_w,
        **{f"pgm/{k}": v for k, v in model.data.items()},
    }
    meta = {
        "households": [h.__dict__ for h in grid.households],
        "bus_index": grid.bus_index,
        "line_index": grid.line_index,
        "load_index": grid.load_index,
        "sgen_index": grid.sgen_index,
        "load_rows": model.load_rows,
        "sgen_rows": model.sgen_rows,
        "node_ids": model.node_ids,
        "line_ids": model.line_ids,
        "trafo_ids": model.trafo_ids,
    }
    write(path, arrays, meta)
    return grid


def clear_sky(inputs: dict[str, Any], compute: Any) -> np.ndarray:
    """A clear-sky PV series (see households.py) for these inputs, computed once."""
    path = entry("clearsky", inputs, ("pvlib", "pandas"))
    found = read(path)
    if found is not None and "w_per_kwp" in found[0]:
        return found[0]["w_per_kwp"]
    series: np.ndarray = compute()
    write(path, {"w_per_kwp": series}, {"inputs": inputs})
    return series
