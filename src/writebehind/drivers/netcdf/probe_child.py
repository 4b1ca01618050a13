"""The helper ``probe.py`` starts in a fresh interpreter: ``python -P probe_child.py COMMAND
PATH [ARG]``, which prints one JSON line.

A damaged HDF5 file can hang or crash the library, so what recovery reads or repairs with
netCDF-C or HDF5 runs here, in a process of its own with a timeout. This file imports only
the standard library and netCDF4 (it is run by its path, not as part of writebehind, so it
starts as fast as a bare ``import netCDF4``; ``-P`` keeps this folder, whose modules have
plain names like ``hdf5``, off ``sys.path``). The commands:

- ``probe PATH``: open the file, read every variable's first and last committed rows;
- ``shrink PATH COMMITTED``: shrink variable-length variables to their committed length;
- ``reseal PATH``: rewrite the checksummed chunks past the committed length that fail
  their checksum;
- ``object-headers PATH``: the object header address of every appendable variable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["COMMANDS", "main"]


def die_with_parent() -> None:
    """Die with the process that started this helper (Linux), which passes its pid in
    ``WRITEBEHIND_HELPER_PARENT``.

    Run first: a recovery killed while its helper writes the file would otherwise leave the
    helper writing, without a lock (HDF5's locking is off in it), while the next open
    recovers the same file.
    """
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(os.environ["WRITEBEHIND_HELPER_PARENT"]):
        sys.exit("the process that started this helper is gone")  # before prctl took effect


def _groups(dataset: Any) -> Any:
    """Every group of ``dataset`` with its path prefix ("" for the root, "a/" for a)."""
    groups = [("", dataset)]
    while groups:
        prefix, group = groups.pop()
        groups.extend((prefix + name + "/", g) for name, g in group.groups.items())
        yield prefix, group


# -- the probe ---------------------------------------------------------------------------------
def probe(path: str) -> dict[str, Any]:
    """Open the file, walk every group and read each variable's first and last committed
    rows (which reach the chunk index and the newest chunks) and its attributes."""
    import netCDF4

    out: dict[str, Any] = {
        "ok": False,
        "error": "",
        "uncommitted": {},
        "vlen_committed": {},
        "file_id": None,
        "checksummed": False,
    }
    try:
        with netCDF4.Dataset(path, "r") as ds:
            out["file_id"] = str(ds.__dict__.get("writebehind_file_id", ""))
            for prefix, group in _groups(ds):
                for name, var in group.variables.items():
                    var.set_auto_maskandscale(False)
                    attrs = {a: var.getncattr(a) for a in var.ncattrs()}
                    unlimited = var.ndim and var.dimensions and var.get_dims()[0].isunlimited()
                    if not unlimited:
                        if var.size and var.size * var.dtype.itemsize < 1 << 24:
                            var[...]
                        continue
                    rows = var.shape[0]
                    committed = int(attrs.get("writebehind_length", rows))
                    if rows > committed:
                        out["uncommitted"][prefix + name] = rows - committed
                    if (var.filters() or {}).get("fletcher32"):
                        out["checksummed"] = True
                    vlen = var.dtype is str or isinstance(var.datatype, netCDF4.VLType)
                    if vlen and "writebehind_length" in attrs:
                        out["vlen_committed"][prefix + name] = committed
                    for row in {0, min(rows, committed) - 1}:
                        if row >= 0 and 0 not in var.shape:
                            var[row]
        out["ok"] = True
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


# -- the HDF5 library netCDF4 itself loaded, through ctypes (no other HDF5 binding) ---------
hid, size = ctypes.c_int64, ctypes.c_uint64


def load_hdf5() -> Any:
    """The HDF5 library netCDF4 loaded, its error printing off and its common calls typed."""
    import netCDF4

    h5 = _find_hdf5(os.path.dirname(netCDF4.__file__))
    h5.H5open()
    h5.H5Eset_auto2.argtypes = [hid, ctypes.c_void_p, ctypes.c_void_p]
    h5.H5Eset_auto2(0, None, None)
    h5.H5Fopen.restype = hid
    h5.H5Fopen.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid]
    h5.H5Fclose.argtypes = [hid]
    h5.H5Lexists.argtypes = [hid, ctypes.c_char_p, hid]
    return h5


def _find_hdf5(here: str) -> Any:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = os.path.basename(line.split()[-1])
                if name.startswith("libhdf5") and "_hl" not in name:
                    return ctypes.CDLL(line.split()[-1])
    except OSError:
        pass
    for pattern in ("../netcdf4.libs/libhdf5-*", "../netCDF4.libs/libhdf5-*", ".dylibs/libhdf5*"):
        for found in sorted(glob.glob(os.path.join(here, pattern))):
            if "_hl" not in os.path.basename(found):
                return ctypes.CDLL(found)
    return ctypes.CDLL(ctypes.util.find_library("hdf5"))


def dataset_path(h5: Any, file: int, path: str) -> bytes:
    """The HDF5 path of the netCDF variable at ``path``.

    netCDF-C stores a variable named like a dimension of its group (but not that
    dimension's coordinate variable) as "_nc4_non_coord_<name>", and "<name>" is then the
    dimension's own dataset; it strips the prefix when it reads the file, so the prefixed
    dataset, where there is one, is the variable.
    """
    parent, _, name = ("/" + path).rpartition("/")
    secret = f"{parent}/_nc4_non_coord_{name}".encode()
    return secret if h5.H5Lexists(file, secret, 0) > 0 else ("/" + path).encode()


# -- clearing variable-length rows past the committed length -------------------------------
def shrink(path: str, committed_json: str) -> dict[str, Any]:
    """Grow each variable-length variable ``committed_json`` names to two chunks past its
    rows and shrink it back to its committed length (``probe.clear_vlen_rows`` says why)."""
    import netCDF4

    h5 = load_hdf5()
    committed_rows: dict[str, int] = json.loads(committed_json)
    h5.H5Dopen2.restype = hid
    h5.H5Dopen2.argtypes = [hid, ctypes.c_char_p, hid]
    h5.H5Dget_space.restype = hid
    h5.H5Dget_space.argtypes = [hid]
    h5.H5Sget_simple_extent_dims.argtypes = [hid, ctypes.POINTER(size), ctypes.POINTER(size)]
    h5.H5Dset_extent.argtypes = [hid, ctypes.POINTER(size)]
    h5.H5Dget_create_plist.restype = hid
    h5.H5Dget_create_plist.argtypes = [hid]
    h5.H5Pget_chunk.argtypes = [hid, ctypes.c_int, ctypes.POINTER(size)]
    h5.H5Pclose.argtypes = [hid]
    for name in ("H5Sclose", "H5Dclose"):
        getattr(h5, name).argtypes = [hid]
    file = h5.H5Fopen(path.encode(), 1, 0)  # H5F_ACC_RDWR, H5P_DEFAULT
    if file < 0:
        sys.exit("H5Fopen failed")
    failed = []
    for variable, committed in committed_rows.items():
        dataset = h5.H5Dopen2(file, dataset_path(h5, file, variable), 0)
        if dataset < 0:
            failed.append(variable)
            continue
        space = h5.H5Dget_space(dataset)
        dims, maxdims = (size * 32)(), (size * 32)()
        rank = h5.H5Sget_simple_extent_dims(space, dims, maxdims)
        h5.H5Sclose(space)
        plist = h5.H5Dget_create_plist(dataset)
        chunk = (size * 32)()
        chunked = h5.H5Pget_chunk(plist, 32, chunk)
        h5.H5Pclose(plist)
        rows = max(dims[0], committed)
        dims[0] = (rows // max(1, chunk[0]) + 2) * max(1, chunk[0])
        grown = rank >= 1 and chunked >= 1 and h5.H5Dset_extent(dataset, dims) >= 0
        dims[0] = committed
        if not grown or h5.H5Dset_extent(dataset, dims) < 0:
            failed.append(variable)
        h5.H5Dclose(dataset)
    if h5.H5Fclose(file) < 0:
        failed.append("(closing the file)")
    try:  # what netCDF4 now reads of them: the last committed row of each
        with netCDF4.Dataset(path, "r") as ds:
            for variable, committed in committed_rows.items():
                if committed:
                    ds[variable][committed - 1]
    except Exception as exc:
        failed.append(f"reading the file afterwards: {type(exc).__name__}: {exc}")
    return {"failed": failed}


# -- resealing the chunks a killed flush may have been rewriting -----------------------------
def reseal(path: str) -> dict[str, Any]:
    """Read every chunk from the one holding the first row past the committed length of
    each checksummed variable; write back one that fails its checksum (``probe.reseal_chunks``
    says why)."""
    import netCDF4

    h5 = _typed_for_reseal(load_hdf5())
    committed = {}  # the checksummed appendable variables, and their committed rows
    try:
        with netCDF4.Dataset(path, "r") as ds:
            for prefix, group in _groups(ds):
                for name, var in group.variables.items():
                    checksummed = (var.filters() or {}).get("fletcher32")
                    if "writebehind_length" in var.ncattrs() and checksummed:
                        committed[prefix + name] = int(var.getncattr("writebehind_length"))
    except Exception as exc:  # the probe says what is wrong with such a file
        return {"resealed": {}, "failed": [], "skipped": repr(exc)}
    if not committed:  # nothing checksummed: the file is not opened for writing at all
        return {"resealed": {}, "failed": []}
    no_check = h5.H5Pcreate(ctypes.c_int64.in_dll(h5, "H5P_CLS_DATASET_XFER_ID_g"))
    h5.H5Pset_edc_check(no_check, 0)  # H5Z_DISABLE_EDC: read a chunk whatever its checksum
    file = h5.H5Fopen(path.encode(), 1, 0)  # H5F_ACC_RDWR, H5P_DEFAULT
    if file < 0:
        sys.exit("H5Fopen failed")
    resealed: dict[str, int] = {}
    failed: list[str] = []
    for variable, length in committed.items():
        dataset = h5.H5Dopen2(file, dataset_path(h5, file, variable), 0)
        if dataset < 0:
            failed.append(variable)
            continue
        _reseal_dataset(h5, dataset, variable, length, no_check, resealed, failed)
        h5.H5Dclose(dataset)
    h5.H5Pclose(no_check)
    if h5.H5Fclose(file) < 0:
        failed.append("(closing the file)")
    return {"resealed": resealed, "failed": failed}


def _typed_for_reseal(h5: Any) -> Any:
    h5.H5Dopen2.restype = hid
    h5.H5Dopen2.argtypes = [hid, ctypes.c_char_p, hid]
    for name in ("H5Dget_space", "H5Dget_type", "H5Dget_create_plist"):
        getattr(h5, name).restype = hid
        getattr(h5, name).argtypes = [hid]
    h5.H5Sget_simple_extent_dims.argtypes = [hid, ctypes.POINTER(size), ctypes.POINTER(size)]
    h5.H5Pget_chunk.argtypes = [hid, ctypes.c_int, ctypes.POINTER(size)]
    h5.H5Tget_size.restype = ctypes.c_size_t
    h5.H5Tget_size.argtypes = [hid]
    h5.H5Screate_simple.restype = hid
    h5.H5Screate_simple.argtypes = [ctypes.c_int, ctypes.POINTER(size), ctypes.POINTER(size)]
    sizes = [ctypes.POINTER(size)] * 4
    h5.H5Sselect_hyperslab.argtypes = [hid, ctypes.c_int, *sizes]
    for name in ("H5Dread", "H5Dwrite"):
        getattr(h5, name).argtypes = [hid, hid, hid, hid, hid, ctypes.c_void_p]
    h5.H5Pcreate.restype = hid
    h5.H5Pcreate.argtypes = [hid]
    h5.H5Pset_edc_check.argtypes = [hid, ctypes.c_int]
    h5.H5Dget_chunk_info_by_coord.argtypes = [
        hid,
        ctypes.POINTER(size),
        ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(size),
        ctypes.POINTER(size),
    ]
    for name in ("H5Sclose", "H5Dclose", "H5Tclose", "H5Pclose"):
        getattr(h5, name).argtypes = [hid]
    return h5


def _reseal_dataset(
    h5: Any,
    dataset: int,
    variable: str,
    length: int,
    no_check: int,
    resealed: dict[str, int],
    failed: list[str],
) -> None:
    """Reseal the chunks of one dataset from the one holding row ``length`` on."""
    space = h5.H5Dget_space(dataset)
    dims, maxdims = (size * 32)(), (size * 32)()
    rank = h5.H5Sget_simple_extent_dims(space, dims, maxdims)
    plist = h5.H5Dget_create_plist(dataset)
    chunk = (size * 32)()
    h5.H5Pget_chunk(plist, 32, chunk)
    h5.H5Pclose(plist)
    dtype = h5.H5Dget_type(dataset)
    row_bytes = h5.H5Tget_size(dtype)
    for axis in range(1, rank):
        row_bytes *= dims[axis]
    rows = max(1, chunk[0])
    first = length // rows * rows
    while first < dims[0]:
        offset = (size * 32)(*[first, *[0] * (rank - 1)])
        address, mask, nbytes = size(), ctypes.c_uint(), size()
        found = h5.H5Dget_chunk_info_by_coord(
            dataset, offset, ctypes.byref(mask), ctypes.byref(address), ctypes.byref(nbytes)
        )
        if found < 0:
            failed.append(variable)
            break
        if address.value == (1 << 64) - 1:  # never written: nothing to reseal
            first += rows
            continue
        count = (size * 32)(*[min(rows, dims[0] - first), *dims[1:rank]])
        memory = h5.H5Screate_simple(rank, count, None)
        h5.H5Sselect_hyperslab(space, 0, offset, None, count, None)  # H5S_SELECT_SET
        buffer = ctypes.create_string_buffer(max(1, count[0] * row_bytes))
        if h5.H5Dread(dataset, dtype, memory, space, 0, buffer) < 0:
            if (
                h5.H5Dread(dataset, dtype, memory, space, no_check, buffer) < 0
                or h5.H5Dwrite(dataset, dtype, memory, space, no_check, buffer) < 0
            ):
                failed.append(variable)
            else:
                resealed[variable] = resealed.get(variable, 0) + 1
        h5.H5Sclose(memory)
        first += rows
    h5.H5Tclose(dtype)
    h5.H5Sclose(space)


# -- where the object headers are ------------------------------------------------------------
def object_headers(path: str) -> dict[str, Any]:
    """The address of the object header of every appendable variable (first dimension
    unlimited), from HDF5's H5Oget_info_by_name3 (the first 8 bytes of the native token are
    the address), with the variable's number of dimensions."""
    import netCDF4

    h5 = load_hdf5()
    h5.H5Oget_info_by_name3.argtypes = [hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint, hid]
    names = {}
    with netCDF4.Dataset(path, "r") as ds:
        for prefix, group in _groups(ds):
            for name, var in group.variables.items():
                if var.dimensions and var.get_dims()[0].isunlimited():
                    names[prefix + name] = var.ndim
    file = h5.H5Fopen(path.encode(), 0, 0)  # H5F_ACC_RDONLY, H5P_DEFAULT
    out = {}
    info = ctypes.create_string_buffer(256)  # an H5O_info2_t: fileno, then the 16-byte token
    for name, ndim in names.items():
        if h5.H5Oget_info_by_name3(file, dataset_path(h5, file, name), info, 1, 0) >= 0:
            out[name] = [int.from_bytes(info.raw[8:16], "little"), ndim]
    h5.H5Fclose(file)
    return out


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "probe": probe,
    "shrink": shrink,
    "reseal": reseal,
    "object-headers": object_headers,
}


def main(argv: list[str]) -> None:
    """Run ``argv[0]`` (a command of :data:`COMMANDS`) on ``argv[1:]``; print its JSON."""
    die_with_parent()
    command, *args = argv
    print(json.dumps(COMMANDS[command](*args)))


if __name__ == "__main__":
    main(sys.argv[1:])
