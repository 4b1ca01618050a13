"""The shapes of all the variables of an open netCDF file, in a number of library calls
that grows with the variables, not with their square.

Asked one variable at a time, netCDF's answer costs that square: netCDF-C (4.10) finds the
length of an unlimited dimension by reading the extent of every variable of the
dimension's group (``nc4_find_dim_len``: an ``H5Dget_space`` each), and netCDF4-python's
``Dimension.isunlimited`` lists every unlimited dimension of the group into a Python list.
writebehind gives each appendable variable its own unlimited dimension, so a group of
3,000 of them took about 20 s to scan, a group of 100 about 3 ms a variable.

Here each group's unlimited dimensions are listed once (``nc_inq_unlimdims``), each
variable's extent is read once from its HDF5 dataset, and an unlimited dimension is as long
as the longest variable on it, which is netCDF-C's own rule. Where a library cannot be
reached or a dataset cannot be read, the dimension's length is asked of netCDF as before.
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

from . import hdf5

__all__ = ["Shape", "UnlimitedDimensions", "variable_shapes"]

_Key = tuple[int, int]  # (group id, dimension id) of a netCDF dimension
_LIBRARY: Any = None


class Shape(NamedTuple):
    """A variable's shape as netCDF reports it, and whether its first dimension is
    unlimited."""

    lengths: tuple[int, ...]
    grows: bool


def variable_shapes(file_path: str, variables: list[tuple[str, Any]]) -> list[Shape]:
    """The shape of each of ``variables`` ((path, netCDF4 Variable) of the NETCDF4 file
    open at ``file_path``), in order. Under the driver's library lock."""
    unlimited = UnlimitedDimensions()
    dimensions = [variable.get_dims() for _, variable in variables]
    growing = [
        path
        for (path, _), dims in zip(variables, dimensions, strict=True)
        if any(unlimited(d) for d in dims)
    ]
    extents = (hdf5.dataset_extents(file_path, growing) if growing else None) or {}
    longest: dict[_Key, int] = {}
    unknown: set[_Key] = set()  # a variable on it could not be read: ask netCDF
    for (path, _), dims in zip(variables, dimensions, strict=True):
        extent = extents.get(path)
        for axis, dim in enumerate(dims):
            if not unlimited(dim):
                continue
            key = (dim._grpid, dim._dimid)
            if extent is None or len(extent) != len(dims):
                unknown.add(key)
            else:
                longest[key] = max(longest.get(key, 0), extent[axis])
    shapes = []
    for dims in dimensions:
        lengths = []
        for dim in dims:
            key = (dim._grpid, dim._dimid)
            known = unlimited(dim) and key not in unknown and key in longest
            lengths.append(longest[key] if known else len(dim))
        shapes.append(Shape(tuple(lengths), bool(dims) and unlimited(dims[0])))
    return shapes


class UnlimitedDimensions:
    """Whether a netCDF4 Dimension is unlimited, asking netCDF-C once per group."""

    def __init__(self) -> None:
        self._of_group: dict[int, frozenset[int] | None] = {}

    def __call__(self, dim: Any) -> bool:
        group = dim._grpid
        ids = self._of_group.get(group, ())
        if ids == ():
            ids = self._of_group[group] = _unlimited_ids(group)
        if ids is None:  # netCDF-C not reachable: its (slower) Python binding
            return bool(dim.isunlimited())
        return dim._dimid in ids


def _unlimited_ids(group: int) -> frozenset[int] | None:
    """The ids of the unlimited dimensions defined in the netCDF group ``group``."""
    nc = _netcdf_library()
    if nc is None:
        return None
    count = ctypes.c_int()
    if nc.nc_inq_unlimdims(group, ctypes.byref(count), None) != 0:
        return None
    ids = (ctypes.c_int * max(1, count.value))()
    if nc.nc_inq_unlimdims(group, ctypes.byref(count), ids) != 0:
        return None
    return frozenset(ids[: count.value])


def _netcdf_library() -> Any:
    """The netCDF-C library netCDF4 loaded (None if it cannot be found)."""
    global _LIBRARY
    if _LIBRARY is not None:
        return _LIBRARY or None
    candidates = hdf5.loaded_library_paths("libnetcdf")
    for candidate in candidates:
        try:
            nc = ctypes.CDLL(candidate)
            nc.nc_inq_unlimdims.argtypes = [
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_int),
                ctypes.c_void_p,
            ]
        except (OSError, AttributeError):
            continue
        _LIBRARY = nc
        return nc
    _LIBRARY = False
    return None
