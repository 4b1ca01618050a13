"""What the libraries' open of a file of many variables costs, by dimension layout (issue 16).

Usage: ``python -m benchmarks.reopen_layouts [--variables 3000] [--per-group 100]
[--repeats 5] [--layouts L1,L2,...] [--out FILE]``

Each layout is a file of ``--variables`` variables of two entries of 8 float64, in groups of
``--per-group`` (all in the root group if it is ``--variables``), written by netCDF4 alone
(one define phase a group, then the data), with writebehind's five attributes:

- ``own_entry_own_axis``: writebehind's layout: each variable has its own unlimited
  ``name_entry`` and its own ``name_axis1`` (three HDF5 datasets a variable);
- ``own_entry_shared_axis``: one ``axis_8`` a group (two datasets a variable);
- ``shared_entry_shared_axis``: one unlimited ``entry`` and one ``axis_8`` a group (one);
- a ``_1attr`` suffix: the same with only the ``writebehind_length`` attribute.

Then, interleaved over the layouts (the machine's load falls on all alike), ``--repeats``
rounds of this process's CPU time for netCDF-C's ``nc_open`` and ``nc_close``, the same
with every variable's attributes read in between (``nc_inq_varnatts``: netCDF-C then reads
each variable's attributes and matches its dimension scales), and netCDF4's
``Dataset(path).close()``; medians, and per variable in microseconds. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from .scale import netcdf_c_open

LAYOUTS = (
    "own_entry_own_axis",
    "own_entry_own_axis_1attr",
    "own_entry_shared_axis",
    "own_entry_shared_axis_1attr",
    "shared_entry_shared_axis",
    "shared_entry_shared_axis_1attr",
)
ATTRIBUTES = {
    "writebehind_length": np.int64(2),
    "writebehind_codec": "ndarray",
    "writebehind_python": "ndarray",
    "writebehind_dtype": "<f8",
    "writebehind_kind": "appendable",
}


def make(path: Path, layout: str, variables: int, per_group: int) -> None:
    """Write the file of ``layout`` at ``path``."""
    shared_entry = layout.startswith("shared_entry")
    shared_axis = "shared_axis" in layout
    attributes = {"writebehind_length": np.int64(2)} if layout.endswith("1attr") else ATTRIBUTES
    with netCDF4.Dataset(path, "w") as dataset:
        for g in range(variables // per_group):
            group = dataset.createGroup(f"g{g}") if per_group < variables else dataset
            if shared_axis:
                group.createDimension("axis_8", 8)
            if shared_entry:
                group.createDimension("entry", None)
            names = [f"v{n}" for n in range(g * per_group, (g + 1) * per_group)]
            for name in names:
                entry = "entry" if shared_entry else f"{name}_entry"
                axis = "axis_8" if shared_axis else f"{name}_axis1"
                if not shared_entry:
                    group.createDimension(entry, None)
                if not shared_axis:
                    group.createDimension(axis, 8)
                variable = group.createVariable(
                    name, "f8", (entry, axis), chunksizes=(770, 8), fill_value=False
                )
                variable.setncatts(attributes)
            for name in names:
                group.variables[name][0:2] = np.ones((2, 8))


def _cpu(action: Callable[[], None]) -> float:
    started = time.process_time()
    action()
    return time.process_time() - started


def run(variables: int, per_group: int, repeats: int, layouts: list[str]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="writebehind-layouts-") as directory:
        rows: dict[str, dict[str, Any]] = {}
        paths = {layout: Path(directory) / f"{layout}.nc" for layout in layouts}
        for layout, path in paths.items():
            made = _cpu(lambda: make(path, layout, variables, per_group))  # noqa: B023
            rows[layout] = {
                "layout": layout,
                "variables": variables,
                "per_group": per_group,
                "make_cpu_s": round(made, 2),
                "file_mb": round(path.stat().st_size / 1e6, 1),
            }
        runs: dict[str, dict[str, list[float]]] = {layout: {} for layout in layouts}
        for _ in range(repeats):
            for layout, path in paths.items():
                actions: dict[str, Callable[[], None]] = {
                    "netcdf_c_open_close": lambda: netcdf_c_open(path, False),  # noqa: B023
                    "netcdf_c_open_attrs_close": lambda: netcdf_c_open(path, True),  # noqa: B023
                    "netcdf4_open_close": lambda: netCDF4.Dataset(path).close(),  # noqa: B023
                }
                for key, action in actions.items():
                    runs[layout].setdefault(key, []).append(_cpu(action))
    for layout, times in runs.items():
        for key, seconds in times.items():
            rows[layout][f"{key}_cpu_s"] = round(statistics.median(seconds), 3)
            rows[layout][f"{key}_cpu_us_per_variable"] = round(
                statistics.median(seconds) / variables * 1e6, 1
            )
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, default=3000)
    parser.add_argument("--per-group", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = run(args.variables, args.per_group, args.repeats, args.layouts.split(","))
    text = json.dumps({"rows": rows, "load_average_end": os.getloadavg()}, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
