"""What recovery runs in a fresh interpreter, with a timeout: a damaged HDF5 file can hang
or crash the library, and HDF5's own file locking must be off while recovery holds its lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PROBE_TIMEOUT_SECONDS",
    "ProbeResult",
    "clear_vlen_rows",
    "object_header_addresses",
    "probe",
    "reseal_chunks",
]

PROBE_TIMEOUT_SECONDS = 60.0


# Run first in every helper: it dies with the process that started it (Linux). A recovery
# killed while its helper writes the file would otherwise leave the helper writing, without
# a lock (HDF5's locking is off in it), while the next open recovers the same file.
_DIE_WITH_PARENT = r"""
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):  # not Linux
    pass
if os.getppid() != int(os.environ["WRITEBEHIND_HELPER_PARENT"]):
    sys.exit("the process that started this helper is gone")  # before prctl took effect
"""


def _run(script: str, *args: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> tuple[Any, str]:
    """Run ``script`` in a fresh interpreter with HDF5's file locking off (recovery holds
    its own lock), which dies with this process; the JSON of its last line of output, or
    None and why there is none."""
    env = dict(
        os.environ, HDF5_USE_FILE_LOCKING="FALSE", WRITEBEHIND_HELPER_PARENT=str(os.getpid())
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", _DIE_WITH_PARENT + script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"hung (> {timeout:g} s)"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return None, f"crashed ({tail[0]})"
    return json.loads(lines[-1]), ""


# Run in a fresh interpreter that imports only netCDF4: opens the file, walks every group and
# reads each variable's first and last committed rows (which reach the chunk index and the
# newest chunks) and its attributes. Prints one JSON line.
_PROBE = r"""
import json, sys
import netCDF4
out = {"ok": False, "error": "", "uncommitted": {}, "vlen_committed": {}, "file_id": None,
       "checksummed": False}
try:
    with netCDF4.Dataset(sys.argv[1], "r") as ds:
        out["file_id"] = str(ds.__dict__.get("writebehind_file_id", ""))
        groups = [("", ds)]
        while groups:
            prefix, group = groups.pop()
            groups.extend((prefix + name + "/", g) for name, g in group.groups.items())
            for name, var in group.variables.items():
                var.set_auto_maskandscale(False)
                attrs = {a: var.getncattr(a) for a in var.ncattrs()}
                if var.ndim == 0 or not var.dimensions or not var.get_dims()[0].isunlimited():
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
print(json.dumps(out))
"""


@dataclass
class ProbeResult:
    ok: bool
    error: str
    uncommitted_rows: dict[str, int]
    vlen_committed: dict[str, int] = field(default_factory=dict)
    file_id: str | None = None  # the file's writebehind_file_id ("" none); None: not read
    checksummed: bool = True  # whether an appendable variable has checksums (True: unknown)


def probe(path: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> ProbeResult:
    result, problem = _run(_PROBE, path, timeout=timeout)
    if result is None:
        return ProbeResult(False, f"netCDF4 {problem} reading it", {})
    return ProbeResult(
        bool(result["ok"]),
        str(result["error"]),
        dict(result["uncommitted"]),
        dict(result["vlen_committed"]),
        result["file_id"],
        bool(result.get("checksummed", True)),
    )


# The HDF5 library netCDF4 itself loaded, through ctypes (no other HDF5 binding is needed).
_LOAD_HDF5 = r"""
import ctypes, ctypes.util, glob, json, os, sys
import netCDF4

def hdf5():
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = os.path.basename(line.split()[-1])
                if name.startswith("libhdf5") and "_hl" not in name:
                    return ctypes.CDLL(line.split()[-1])
    except OSError:
        pass
    here = os.path.dirname(netCDF4.__file__)
    for pattern in ("../netcdf4.libs/libhdf5-*", "../netCDF4.libs/libhdf5-*", ".dylibs/libhdf5*"):
        for found in sorted(glob.glob(os.path.join(here, pattern))):
            if "_hl" not in os.path.basename(found):
                return ctypes.CDLL(found)
    return ctypes.CDLL(ctypes.util.find_library("hdf5"))

hid, size = ctypes.c_int64, ctypes.c_uint64
h5 = hdf5()
h5.H5open()
h5.H5Eset_auto2.argtypes = [hid, ctypes.c_void_p, ctypes.c_void_p]
h5.H5Eset_auto2(0, None, None)
h5.H5Fopen.restype = hid
h5.H5Fopen.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid]
h5.H5Fclose.argtypes = [hid]
h5.H5Lexists.argtypes = [hid, ctypes.c_char_p, hid]

def dataset_path(file, path):
    # The HDF5 path of the netCDF variable at ``path``. netCDF-C stores a variable named
    # like a dimension of its group (but not that dimension's coordinate variable) as
    # "_nc4_non_coord_<name>", and "<name>" is then the dimension's own dataset; it strips
    # the prefix when it reads the file, so the prefixed dataset, where there is one, is
    # the variable.
    parent, _, name = ("/" + path).rpartition("/")
    secret = f"{parent}/_nc4_non_coord_{name}".encode()
    return secret if h5.H5Lexists(file, secret, 0) > 0 else ("/" + path).encode()
"""


# -- clearing variable-length rows past the committed length -------------------------------
# Rows of a variable-length variable (str, bytes, dict records) hold references into HDF5's
# global heap. Past the committed length -- inside the variable's extent or past it, in the
# last chunk -- a kill can leave references to heap objects that never reached the file.
# HDF5 frees the old object when it overwrites a row, so the next append there would fail
# ("HDF error") and the store could never continue the file. HDF5 fills the part of a chunk
# that a shrinking extent gives up with the fill value (null references) without freeing
# anything: so each such variable is grown to two chunks past its rows and shrunk back to its
# committed length. netCDF cannot do that: this runs in a fresh interpreter and calls
# H5Dset_extent through ctypes on the HDF5 library netCDF4 loaded.
_SHRINK = (
    _LOAD_HDF5
    + r"""
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
file = h5.H5Fopen(sys.argv[1].encode(), 1, 0)  # H5F_ACC_RDWR, H5P_DEFAULT
if file < 0:
    sys.exit("H5Fopen failed")
failed = []
for path, committed in json.loads(sys.argv[2]).items():
    dataset = h5.H5Dopen2(file, dataset_path(file, path), 0)
    if dataset < 0:
        failed.append(path)
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
        failed.append(path)
    h5.H5Dclose(dataset)
if h5.H5Fclose(file) < 0:
    failed.append("(closing the file)")
try:  # what netCDF4 now reads of them: the last committed row of each
    with netCDF4.Dataset(sys.argv[1], "r") as ds:
        for path, committed in json.loads(sys.argv[2]).items():
            if committed:
                ds[path][committed - 1]
except Exception as exc:
    failed.append(f"reading the file afterwards: {type(exc).__name__}: {exc}")
print(json.dumps({"failed": failed}))
"""
)


def clear_vlen_rows(path: str, committed: dict[str, int]) -> str:
    """Shrink the variable-length variables ``committed`` names to their committed length;
    '' on success, else what failed."""
    result, problem = _run(_SHRINK, path, json.dumps(committed))
    if result is None:
        return f"HDF5 {problem} shrinking it"
    failed = result["failed"]
    return f"failed: {', '.join(failed)}" if failed else ""


# -- resealing the chunks a killed flush may have been rewriting -----------------------------
# A numeric appendable variable's chunks carry HDF5's Fletcher32 checksum. A flush rewrites
# the chunk holding the first row past the committed length in place, and a kill in that
# write (the kernel stops a large write between pages on SIGKILL) leaves old and new bytes
# in it: the rows below the committed length have the same bytes in both, but the checksum
# fits neither, so they would be unreadable, and the next append (which reads the chunk to
# merge into it) would fail. So, in a file a killed writer left, every chunk from that one
# on is read, and one that fails its checksum is read again without the check and written
# back: HDF5 computes its checksum anew, in place (a chunk of the same size keeps its
# address). Chunks below it were complete before the last flush and are never rewritten:
# their checksums still catch damage.
_RESEAL = (
    _LOAD_HDF5
    + r"""
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
h5.H5Sselect_hyperslab.argtypes = [hid, ctypes.c_int, ctypes.POINTER(size),
                                   ctypes.POINTER(size), ctypes.POINTER(size), ctypes.POINTER(size)]
for name in ("H5Dread", "H5Dwrite"):
    getattr(h5, name).argtypes = [hid, hid, hid, hid, hid, ctypes.c_void_p]
h5.H5Pcreate.restype = hid
h5.H5Pcreate.argtypes = [hid]
h5.H5Pset_edc_check.argtypes = [hid, ctypes.c_int]
h5.H5Dget_chunk_info_by_coord.argtypes = [hid, ctypes.POINTER(size), ctypes.POINTER(ctypes.c_uint),
                                          ctypes.POINTER(size), ctypes.POINTER(size)]
for name in ("H5Sclose", "H5Dclose", "H5Tclose", "H5Pclose"):
    getattr(h5, name).argtypes = [hid]
committed = {}  # the checksummed appendable variables, and their committed rows
try:
    with netCDF4.Dataset(sys.argv[1], "r") as ds:
        groups = [("", ds)]
        while groups:
            prefix, group = groups.pop()
            groups.extend((prefix + name + "/", g) for name, g in group.groups.items())
            for name, var in group.variables.items():
                checksummed = (var.filters() or {}).get("fletcher32")
                if "writebehind_length" in var.ncattrs() and checksummed:
                    committed[prefix + name] = int(var.getncattr("writebehind_length"))
except Exception as exc:  # the probe says what is wrong with such a file
    print(json.dumps({"resealed": {}, "failed": [], "skipped": repr(exc)}))
    sys.exit(0)
if not committed:  # nothing checksummed: the file is not opened for writing at all
    print(json.dumps({"resealed": {}, "failed": []}))
    sys.exit(0)
no_check = h5.H5Pcreate(ctypes.c_int64.in_dll(h5, "H5P_CLS_DATASET_XFER_ID_g"))
h5.H5Pset_edc_check(no_check, 0)  # H5Z_DISABLE_EDC: read a chunk whatever its checksum
file = h5.H5Fopen(sys.argv[1].encode(), 1, 0)  # H5F_ACC_RDWR, H5P_DEFAULT
if file < 0:
    sys.exit("H5Fopen failed")
resealed, failed = {}, []
for path, length in committed.items():
    dataset = h5.H5Dopen2(file, dataset_path(file, path), 0)
    if dataset < 0:
        failed.append(path)
        continue
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
        offset = (size * 32)(*([first] + [0] * (rank - 1)))
        address, mask, nbytes = size(), ctypes.c_uint(), size()
        if h5.H5Dget_chunk_info_by_coord(dataset, offset, ctypes.byref(mask),
                                         ctypes.byref(address), ctypes.byref(nbytes)) < 0:
            failed.append(path)
            break
        if address.value == (1 << 64) - 1:  # never written: nothing to reseal
            first += rows
            continue
        count = (size * 32)(*([min(rows, dims[0] - first)] + list(dims[1:rank])))
        memory = h5.H5Screate_simple(rank, count, None)
        h5.H5Sselect_hyperslab(space, 0, offset, None, count, None)  # H5S_SELECT_SET
        buffer = ctypes.create_string_buffer(max(1, count[0] * row_bytes))
        if h5.H5Dread(dataset, dtype, memory, space, 0, buffer) < 0:
            if (h5.H5Dread(dataset, dtype, memory, space, no_check, buffer) < 0
                    or h5.H5Dwrite(dataset, dtype, memory, space, no_check, buffer) < 0):
                failed.append(path)
            else:
                resealed[path] = resealed.get(path, 0) + 1
        h5.H5Sclose(memory)
        first += rows
    h5.H5Tclose(dtype)
    h5.H5Sclose(space)
    h5.H5Dclose(dataset)
h5.H5Pclose(no_check)
if h5.H5Fclose(file) < 0:
    failed.append("(closing the file)")
print(json.dumps({"resealed": resealed, "failed": failed}))
"""
)


def reseal_chunks(path: str) -> tuple[dict[str, int], str]:
    """Reseal the chunks past the committed length of every checksummed variable of
    ``path`` (see _RESEAL); the chunks resealed per variable, and what failed ('' if
    nothing)."""
    result, problem = _run(_RESEAL, path)
    if result is None:
        return {}, f"HDF5 {problem} resealing it"
    failed = result["failed"]
    return dict(result["resealed"]), f"failed: {', '.join(failed)}" if failed else ""


# -- where the object headers are ------------------------------------------------------------
# The address of the object header of every appendable variable (first dimension unlimited),
# from HDF5's H5Oget_info_by_name3: the first 8 bytes of the native token are the address;
# with the variable's number of dimensions, which its dataset's layout must match.
_OBJECT_HEADERS = (
    _LOAD_HDF5
    + r"""
h5.H5Oget_info_by_name3.argtypes = [hid, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint, hid]
names = {}
with netCDF4.Dataset(sys.argv[1], "r") as ds:
    groups = [("", ds)]
    while groups:
        prefix, group = groups.pop()
        groups.extend((prefix + name + "/", g) for name, g in group.groups.items())
        for name, var in group.variables.items():
            if var.dimensions and var.get_dims()[0].isunlimited():
                names[prefix + name] = var.ndim
file = h5.H5Fopen(sys.argv[1].encode(), 0, 0)  # H5F_ACC_RDONLY, H5P_DEFAULT
out = {}
info = ctypes.create_string_buffer(256)  # an H5O_info2_t: fileno, then the 16-byte token
for name, ndim in names.items():
    if h5.H5Oget_info_by_name3(file, dataset_path(file, name), info, 1, 0) >= 0:
        out[name] = [int.from_bytes(info.raw[8:16], "little"), ndim]
h5.H5Fclose(file)
print(json.dumps(out))
"""
)


def object_header_addresses(path: str) -> dict[str, tuple[int, int]]:
    """The object header address and the number of dimensions of each appendable variable
    of ``path``; {} on failure."""
    result, _ = _run(_OBJECT_HEADERS, path)
    if result is None:
        return {}
    found = result.items()
    return {str(name): (int(address), int(ndim)) for name, (address, ndim) in found}
