"""xarray interop (optional: needs ``pip install 'writebehind[xarray]'``).

``node.to_xarray()`` reads through the store, so its netCDF calls run on the writer thread
like every other read (netCDF-C is not thread-safe: opening the same file with xarray while
the store is open would call it from a second thread). The result is in memory and mirrors
``xarray.open_dataset(file, group=...)`` of the closed file: the same variables, the file's
dimension names, the user's metadata as attributes and a quantity's units as its CF
``units`` attribute; values are decoded as ``read()`` decodes them (bools as bool, dict
records as dicts, strings as str).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._catalog import GroupEntry, VariableEntry

if TYPE_CHECKING:
    from ._core import StoreCore

__all__ = ["to_xarray"]


def _xarray() -> Any:
    try:
        import xarray
    except ImportError as exc:
        raise ImportError("to_xarray() needs xarray: pip install 'writebehind[xarray]'") from exc
    return xarray


def to_xarray(core: StoreCore, path: str) -> Any:
    """The group at ``path`` as an ``xarray.Dataset``, or the variable as a ``DataArray``.

    A group's Dataset holds its own variables (not those of its subgroups), as
    ``xarray.open_dataset(file, group=path)`` does. Everything is read into memory.

    Raises
    ------
    ImportError
        xarray is not installed.
    KeyError
        Nothing is stored at ``path`` yet.
    """
    xr = _xarray()
    node = core.catalog.lookup(path)
    if node is None:
        raise KeyError(f"no group or variable {path!r} in {core.driver.file_name!r}")
    if isinstance(node, VariableEntry):
        return _data_array(xr, core, node)
    assert isinstance(node, GroupEntry)
    variables = {}
    for name in core.catalog.children(path):
        child = core.catalog.lookup(f"{path}/{name}" if path else name)
        if isinstance(child, VariableEntry):
            variables[name] = _data_array(xr, core, child)
    return xr.Dataset(variables, attrs=_metadata(core, path))


def _data_array(xr: Any, core: StoreCore, var: VariableEntry) -> Any:
    future, decode = core.read_call(var.path, None)
    value = decode(core.engine.result(future))
    attrs = _metadata(core, var.path)
    units = var.spec.units
    if units is not None:
        value = value.magnitude
        attrs["units"] = units
    data = _as_array(value, var)
    return xr.DataArray(data, dims=_dims(core, var, data.ndim), attrs=attrs, name=_name(var))


def _as_array(value: Any, var: VariableEntry) -> np.ndarray[Any, Any]:
    if var.numeric:
        return np.asarray(value)
    # str, bytes and dict values: an object array (entries along axis 0 when appendable)
    items = value if var.appendable else [value]
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out if var.appendable else out.reshape(())


def _dims(core: StoreCore, var: VariableEntry, ndim: int) -> tuple[str, ...]:
    """The file's dimension names, or the NetCDF driver's naming rule for other drivers."""
    driver = core.driver
    dimension_names = getattr(driver, "dimension_names", None)
    if dimension_names is not None:
        names = core.engine.run("dimension names", lambda: dimension_names(var.path), var.path)
        if len(names) == ndim:
            return tuple(names)
    name = _name(var)
    first = 1 if var.appendable else 0
    axes = tuple(f"{name}_axis{k}" for k in range(first, first + len(var.layout.shape)))
    dims = (f"{name}_entry", *axes) if var.appendable else axes
    return dims[:ndim]


def _name(var: VariableEntry) -> str:
    return var.path.rpartition("/")[2]


def _metadata(core: StoreCore, path: str) -> dict[str, Any]:
    future, decode = core.read_metadata_call(path)
    return dict(decode(core.engine.result(future)))
