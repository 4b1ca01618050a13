"""Which backend a target names: the one place ``open``, ``inspect`` and the CLI ask.

============================================  ==========================================
target                                        backend
============================================  ==========================================
a backend or a facade (``MemoryBackend()``)   itself
``"run.zarr"`` (a path ending in ``.zarr``)   :class:`~writebehind.drivers.zarr.ZarrBackend`
``"icechunk:///dir"``, ``icechunk+s3://``     ``IcechunkBackend`` (``drivers/icechunk.py``)
``"s3://bucket/prefix/run.zarr"`` (any URL)   ``ZarrBackend``, through obstore
``"ens.zarr/replica-0"``, ``group="..."``       ``ZarrBackend`` of one group of a hierarchy
any other path (``"run.nc"``)                 :class:`~writebehind.NetCDFIODriver`
============================================  ==========================================

The Zarr backend needs the ``zarr`` extra (``pip install 'writebehind[zarr]'``); it is
imported only when a target names it; Icechunk, the ``icechunk`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict, Unpack, cast

from ._core import DriverFacade
from ._paths import is_url, split_zarr_target
from .drivers.base import RecoveryOutcome, StorageIODriver

if TYPE_CHECKING:
    from .drivers.zarr import ZarrBackend

__all__ = [
    "BackendOptions",
    "backend_class_for",
    "backend_for",
    "is_zarr_target",
    "recover",
    "split_options",
]

Target = str | bytes | os.PathLike[str] | os.PathLike[bytes] | StorageIODriver | DriverFacade


def is_zarr_target(target: str) -> bool:
    """Whether ``target`` names a Zarr store: a URL (``s3://...``), a ``*.zarr`` path, or a
    path through a ``*.zarr`` directory (a group of that hierarchy: ``ens.zarr/replica-0``).

    A local path whose last part has a NetCDF/HDF5 suffix (``.nc``, ``.nc4``, ``.h5``...) is
    a NetCDF file even inside a ``*.zarr`` directory: ``run.zarr/segment-3.nc`` stays NetCDF.
    """
    if is_url(target):
        return True
    if target.rstrip("/\\").endswith(".zarr"):
        return True
    if os.path.splitext(target)[1].lower() in NETCDF_SUFFIXES:
        return False
    return bool(split_zarr_target(target)[1])


NETCDF_SUFFIXES = frozenset({".nc", ".nc4", ".cdf", ".netcdf", ".h5", ".hdf5", ".he5"})
"""Suffixes of a last path part that make a local path a NetCDF file wherever it is."""


class BackendOptions(TypedDict, total=False):
    """The options that pick and open a backend (keyword arguments of ``backend_for``,
    ``open`` and ``open_async``)."""

    #: Checksum every entry (NetCDF files only; see ``NetCDFBackend``).
    checksums: bool
    #: Endpoint, credentials... for object storage (see ``ZarrBackend``).
    storage_options: Mapping[str, Any] | None
    #: One group of the Zarr hierarchy at the target (see ``ZarrBackend``).
    group: str | None


def split_options(options: Mapping[str, Any]) -> tuple[BackendOptions, dict[str, Any]]:
    """``options`` split into the backend's (``BackendOptions``) and the rest (the store's)."""
    backend = {key: value for key, value in options.items() if key in _BACKEND_KEYS}
    rest = {key: value for key, value in options.items() if key not in _BACKEND_KEYS}
    return cast(BackendOptions, backend), rest


_BACKEND_KEYS = BackendOptions.__optional_keys__


def backend_for(
    target: Target, mode: str | None = None, **options: Unpack[BackendOptions]
) -> StorageIODriver | DriverFacade:
    """The backend (or facade) that stores ``target``, opened in ``mode`` when made here,
    with the ``BackendOptions`` given (``checksums``, ``storage_options``, ``group``).

    Raises
    ------
    ValueError
        ``target`` is a backend and ``mode`` differs from its own, or an option does not
        apply to the backend (``checksums`` on Zarr, ``storage_options`` on NetCDF,
        ``group`` on anything but a plain Zarr store).
    ImportError
        ``target`` names a Zarr store and the ``zarr`` extra is not installed.
    """
    checksums = options.get("checksums", False)
    storage_options = options.get("storage_options")
    group = options.get("group")
    if isinstance(target, StorageIODriver | DriverFacade):
        if group:
            raise ValueError("group= is for Zarr targets; give the group to the backend")
        given = target.access_mode if isinstance(target, StorageIODriver) else None
        if mode is not None and isinstance(target, StorageIODriver) and mode != given:
            raise ValueError(
                f"mode {mode!r} differs from the backend's own ({given!r}): give the mode to "
                "the backend"
            )
        return target
    name = os.fsdecode(target)
    if name.startswith(("icechunk://", "icechunk+s3://")):
        if checksums:
            raise ValueError(f"checksums=True is for NetCDF files; {name!r} is Icechunk")
        if group:
            raise ValueError(
                f"group= is for plain Zarr hierarchies; {name!r} is an Icechunk repository: "
                "give each replica its own branch ('...#replica-0') or repository"
            )
        try:
            from .drivers.icechunk import IcechunkBackend
        except ImportError as exc:
            raise ImportError(
                f"{name!r} is an Icechunk repository: install the icechunk extra "
                "(pip install 'writebehind[icechunk]')"
            ) from exc
        return IcechunkBackend(name, mode, storage_options=storage_options)
    if is_zarr_target(name):
        if checksums:
            raise ValueError(
                f"checksums=True is for NetCDF files; {name!r} is a Zarr store, whose "
                "chunks zarr's codecs decode (a damaged compressed chunk fails to decode)"
            )
        backend = _zarr_backend(name)
        return backend(name, mode, storage_options=storage_options, group=group or "")
    if group:
        raise ValueError(
            f"group= puts a store in one group of a shared Zarr hierarchy; {name!r} is a "
            "NetCDF file, which has one writer: write one file per replica, or use a Zarr "
            "target ('ens.zarr', 's3://bucket/ens.zarr') with a group each"
        )
    if storage_options:
        raise ValueError(f"storage_options are for object storage; {name!r} is a local file")
    from ._legacy import NetCDFIODriver

    return NetCDFIODriver(name, mode, checksums=checksums)


def backend_class_for(
    target: str | bytes | os.PathLike[str] | os.PathLike[bytes],
) -> type[StorageIODriver]:
    """The class of backend that stores the path or URL ``target`` (nothing is opened).

    Raises
    ------
    ImportError
        ``target`` names a Zarr store and the ``zarr`` extra is not installed.
    """
    name = os.fsdecode(target)
    if is_zarr_target(name):
        return _zarr_backend(name)
    from .drivers.netcdf import NetCDFBackend

    return NetCDFBackend


def recover(
    target: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    force: bool = False,
    write: bool = True,
) -> RecoveryOutcome | None:
    """Put back what a writer killed while writing ``target`` left, if it needs it: the
    backend that stores ``target`` recovers it (a netCDF-4 file: see
    :func:`writebehind.drivers.netcdf.recover`, which returns a
    :class:`~writebehind.RecoveryReport`). None: that backend never needs recovery (Zarr).
    """
    name = os.fsdecode(target)
    return backend_class_for(name).recover(name, force=force, write=write)


def _zarr_backend(name: str) -> type[ZarrBackend]:
    try:
        from .drivers.zarr import ZarrBackend
    except ImportError as exc:
        raise ImportError(
            f"{name!r} is a Zarr store: install the zarr extra (pip install 'writebehind[zarr]')"
        ) from exc
    return ZarrBackend
