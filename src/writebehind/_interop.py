"""xarray interop (optional: needs ``pip install xarray``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import StoreCore

__all__ = ["to_xarray"]


def to_xarray(core: StoreCore, path: str) -> Any:
    """Open the group at ``path`` (or the group holding the variable) with xarray."""
    try:
        import xarray as xr
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("to_xarray() needs xarray: pip install 'writebehind[xarray]'") from exc
    from ._engine import VarState

    core.engine.flush()
    node = core.lookup(path)
    group, _, var_name = path.rpartition("/") if isinstance(node, VarState) else (path, "", "")
    dataset = xr.open_dataset(core.driver.file_name, group=group or None).load()
    dataset.close()
    return dataset[var_name] if var_name else dataset
