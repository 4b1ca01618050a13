"""The HDF5 library netCDF4 loaded, called in this process through ctypes.

The same library, so that a file netCDF has open is shared (``H5Fopen`` of it a second time,
read-only, sees netCDF's caches, and closing that identifier leaves netCDF's alone). Every
call must be made under the driver's library lock (netCDF-C and HDF5 are not thread-safe),
which the writer thread holds around every driver call.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "CHUNK_CALLBACK",
    "VISIT_CALLBACK",
    "dataset_extents",
    "dataset_header",
    "header_addresses",
    "hsize",
    "library",
    "read_only",
]

hid = ctypes.c_int64
hsize = ctypes.c_uint64
VISIT_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p
)
CHUNK_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(hsize), ctypes.c_uint, ctypes.c_uint64, hsize, ctypes.c_void_p
)
_LIBRARY: Any = None


def library() -> Any:
    """The HDF5 library netCDF4 loaded, with the prototypes writebehind uses; None if it
    cannot be found (or is older than 1.14, which added ``H5Dchunk_iter``)."""
    global _LIBRARY
    if _LIBRARY is not None:
        return _LIBRARY or None
    candidates = [p for p in loaded_library_paths("libhdf5") if "_hl" not in os.path.basename(p)]
    for candidate in candidates:
        try:
            h5 = ctypes.CDLL(candidate)
            h5.H5Dchunk_iter  # noqa: B018 (HDF5 1.14 and later)
        except (OSError, AttributeError):
            continue
        _declare(h5)
        _LIBRARY = h5
        return h5
    _LIBRARY = False
    return None


def loaded_library_paths(prefix: str) -> list[str]:
    """Paths of the shared libraries named ``prefix*`` that netCDF4 loaded (or ships): those
    mapped into this process first, then those in the wheel's library folder."""
    import netCDF4  # loads its libraries

    candidates = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if os.path.basename(path).startswith(prefix):
                candidates.append(path)
    here = os.path.dirname(netCDF4.__file__)
    for pattern in (
        f"../netcdf4.libs/{prefix}-*",
        f"../netCDF4.libs/{prefix}-*",
        f".dylibs/{prefix}*",
    ):
        candidates += sorted(glob.glob(os.path.join(here, pattern)))
    return candidates


def header_addresses(path: str, variables: dict[str, int]) -> dict[str, tuple[int, int]] | None:
    """The object header address of each of ``variables`` (path -> number of dimensions) in
    the HDF5 file at ``path``, with that number; None if HDF5 cannot tell. Under the lock.

    netCDF-C stores a variable named like a dimension of its group (but not that
    dimension's coordinate variable) as ``_nc4_non_coord_<name>``, and ``<name>`` is then
    the dimension's own dataset: the prefixed dataset, where there is one, is the variable.
    """
    with read_only(path) as opened:
        if opened is None:
            return None
        h5, file = opened
        out = {}
        info = ctypes.create_string_buffer(256)  # an H5O_info2_t: fileno, the 16-byte token
        for name, ndim in variables.items():
            parent, _, leaf = ("/" + name).rpartition("/")
            secret = f"{parent}/_nc4_non_coord_{leaf}".encode()
            target = secret if h5.H5Lexists(file, secret, 0) > 0 else ("/" + name).encode()
            if h5.H5Oget_info_by_name3(file, target, info, 1, 0) >= 0:  # H5O_INFO_BASIC
                out[name] = (int.from_bytes(info.raw[8:16], "little"), ndim)
        return out


def dataset_extents(path: str, variables: list[str]) -> dict[str, tuple[int, ...]] | None:
    """The current extent of the dataset of each of ``variables`` (netCDF paths, such as
    ``"g/v"``) in the HDF5 file at ``path``; None if HDF5 cannot be reached or open it.
    A variable whose dataset cannot be found or read is left out. Under the lock.

    One lookup per variable: what netCDF-C's length of an unlimited dimension costs for
    every variable of its group (see drivers/netcdf/shapes.py).
    """
    with read_only(path) as opened:
        if opened is None:
            return None
        h5, file = opened
        out = {}
        dims = (hsize * 32)()  # H5S_MAX_RANK
        for name in variables:
            target = _dataset_name(h5, file, name)
            dataset = h5.H5Dopen2(file, target, 0) if target is not None else -1
            if dataset < 0:
                continue
            try:
                space = h5.H5Dget_space(dataset)
                if space < 0:
                    continue
                try:
                    rank = h5.H5Sget_simple_extent_dims(space, dims, None)
                finally:
                    h5.H5Sclose(space)
            finally:
                h5.H5Dclose(dataset)
            if rank >= 0:
                out[name] = tuple(int(n) for n in dims[:rank])
        return out


def _dataset_name(h5: Any, file: int, name: str) -> bytes | None:
    """The HDF5 path of the dataset of the netCDF variable ``name``, None if it has none
    (see header_addresses for the prefix)."""
    parent, _, leaf = ("/" + name).rpartition("/")
    secret = f"{parent}/_nc4_non_coord_{leaf}".encode()
    if h5.H5Lexists(file, secret, 0) > 0:
        return secret
    plain = ("/" + name).encode()
    return plain if h5.H5Lexists(file, plain, 0) > 0 else None


def dataset_header(h5: Any, file: int, name: str) -> tuple[bytes, int] | None:
    """The HDF5 name (from the root, without its leading slash) and the object header
    address of the dataset of the netCDF variable ``name`` in the open ``file``; None if it
    has none. Under the lock."""
    target = _dataset_name(h5, file, name)
    if target is None:
        return None
    info = ctypes.create_string_buffer(256)  # an H5O_info2_t: fileno, the 16-byte token
    if h5.H5Oget_info_by_name3(file, target, info, 1, 0) < 0:  # H5O_INFO_BASIC
        return None
    return target.lstrip(b"/"), int.from_bytes(info.raw[8:16], "little")


@contextlib.contextmanager
def read_only(path: str) -> Iterator[tuple[Any, int] | None]:
    """The library and an identifier of the file at ``path`` opened read-only (netCDF's
    open file shared), closed on exit; None if HDF5 cannot be reached or open it."""
    h5 = library()
    file = -1 if h5 is None else h5.H5Fopen(os.fsencode(path), 0, 0)  # RDONLY, H5P_DEFAULT
    if file < 0:
        yield None
        return
    try:
        yield h5, file
    finally:
        h5.H5Fclose(file)


def _declare(h5: Any) -> None:
    h5.H5Fopen.restype = hid
    h5.H5Fopen.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid]
    h5.H5Ovisit3.argtypes = [
        hid,
        ctypes.c_int,
        ctypes.c_int,
        VISIT_CALLBACK,
        ctypes.c_void_p,
        ctypes.c_uint,
    ]
    h5.H5Dopen2.restype = hid
    h5.H5Dopen2.argtypes = [hid, ctypes.c_char_p, hid]
    h5.H5Dget_create_plist.restype = hid
    h5.H5Pget_layout.restype = ctypes.c_int
    h5.H5Pget_nfilters.restype = ctypes.c_int
    h5.H5Dchunk_iter.argtypes = [hid, hid, CHUNK_CALLBACK, ctypes.c_void_p]
    h5.H5Dget_offset.restype = ctypes.c_uint64
    h5.H5Dget_storage_size.restype = hsize
    h5.H5Pget_filter2.restype = ctypes.c_int
    h5.H5Pget_filter2.argtypes = [
        hid,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_uint),
    ]
    for name in ("H5Fclose", "H5Dclose", "H5Pclose", "H5Dget_create_plist", "H5Pget_layout"):
        getattr(h5, name).argtypes = [hid]
    for name in ("H5Pget_nfilters", "H5Dget_offset", "H5Dget_storage_size"):
        getattr(h5, name).argtypes = [hid]
    h5.H5Dget_space.restype = hid
    h5.H5Fget_create_plist.restype = hid
    for name in ("H5Dget_space", "H5Sclose", "H5Fget_create_plist"):
        getattr(h5, name).argtypes = [hid]
    h5.H5Sget_simple_extent_dims.restype = ctypes.c_int
    h5.H5Sget_simple_extent_dims.argtypes = [hid, ctypes.POINTER(hsize), ctypes.POINTER(hsize)]
    h5.H5Pget_chunk.restype = ctypes.c_int
    h5.H5Pget_chunk.argtypes = [hid, ctypes.c_int, ctypes.POINTER(hsize)]
    h5.H5Pget_istore_k.argtypes = [hid, ctypes.POINTER(ctypes.c_uint)]
    h5.H5Dget_chunk_info_by_coord.argtypes = [
        hid,
        ctypes.POINTER(hsize),
        ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_uint64),
        ctypes.POINTER(hsize),
    ]
    h5.H5Lexists.argtypes = [hid, ctypes.c_char_p, hid]
    h5.H5Oget_info_by_name3.argtypes = [hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint, hid]
