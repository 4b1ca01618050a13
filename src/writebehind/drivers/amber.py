"""A driver that writes AMBER-convention NetCDF trajectories (NetCDF-3, 64-bit offset).

The AMBER convention (https://ambermd.org/netcdf/nctraj.xhtml) is the trajectory format
that mdtraj, MDAnalysis, cpptraj and VMD read. Its layout is fixed by the convention, so this
driver lays the whole file out when it opens it: the header, the label variables, then one
record per frame holding ``time``, ``coordinates``, ``cell_lengths``, ``cell_angles`` and, if
asked, ``velocities`` and ``forces``. No group or other variable can be created
(``structure_frozen``); the store appends to these variables like to any other.

The file is written with ``os.pwrite``, not through netCDF-C, for one reason: crash safety.
A NetCDF-3 file's record count (``numrecs``, 4 bytes in the header) is the length readers
see. This driver writes a frame's data first and raises ``numrecs`` only in :meth:`sync`,
to the number of frames whose every variable is written (with ``durable``, the data is
fsynced before ``numrecs`` is written, and ``numrecs`` fsynced after). So the record count
on disk is the committed length: a killed writer leaves a file that every reader opens,
holding the frames of the last flush (and at most records of zeros or partial data past
``numrecs``, which readers never look at). netCDF-C gives no such order.

A driver stores what it is given (here big-endian, as NetCDF-3 requires); converting units
(nanometer to angstrom) is the caller's business: ``writebehind.openmm`` does it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.base import ATTR_PREFIX, Layout
from .base import NodeRecord, StorageIODriver
from .netcdf import _chunk_shape

__all__ = ["AmberDriver"]

_NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
_NC_CHAR, _NC_INT, _NC_FLOAT, _NC_DOUBLE = 2, 4, 5, 6
_NC_TYPES = {
    np.dtype("S1"): _NC_CHAR,
    np.dtype(">i4"): _NC_INT,
    np.dtype(">f4"): _NC_FLOAT,
    np.dtype(">f8"): _NC_DOUBLE,
}
#: Bytes kept free after the header, so that attributes set later fit without moving data.
HEADER_RESERVE = 4096
_NUMRECS_OFFSET = 4  # after the magic "CDF\x02"


@dataclass
class _Variable:
    name: str
    dims: tuple[str, ...]
    dtype: np.dtype[Any]  # big-endian, as stored
    attrs: dict[str, Any]
    data: np.ndarray[Any, Any] | None = None  # the value of a fixed (label) variable
    begin: int = 0
    length: int = 0  # entries written so far (record variables)

    @property
    def is_record(self) -> bool:
        return self.dims[0] == "frame"

    def entry_shape(self, dims: dict[str, int]) -> tuple[int, ...]:
        return tuple(dims[d] for d in (self.dims[1:] if self.is_record else self.dims))

    def vsize(self, dims: dict[str, int]) -> int:
        nbytes = int(np.prod(self.entry_shape(dims), dtype=np.int64)) * self.dtype.itemsize
        return -(-nbytes // 4) * 4


class AmberDriver(StorageIODriver):
    """Writes a new AMBER NetCDF trajectory of ``n_atoms`` atoms.

    Parameters
    ----------
    file_name : str
        Path of the trajectory (``.nc``), replaced if it exists.
    access_mode : {'w'}
        Only ``'w'``: the driver writes new files. Read an AMBER file with
        ``NetCDFIODriver(path, 'r')``, mdtraj or MDAnalysis.
    n_atoms : int
        Atoms per frame.
    velocities, forces : bool
        Whether the file has ``velocities`` (angstrom/picosecond) and ``forces``
        (kilocalorie/mole/angstrom) variables.
    box : bool
        Whether it has the unit cell (``cell_lengths``, angstrom, and ``cell_angles``,
        degree), as a periodic system needs.
    program, program_version, title : str
        The global attributes of the same names.
    """

    structure_frozen = (
        "an AMBER trajectory holds the variables of the AMBER convention only "
        "(store other values in a writebehind file)"
    )

    def __init__(
        self,
        file_name: str | bytes | os.PathLike[Any],
        access_mode: str | None = "w",
        *,
        n_atoms: int,
        velocities: bool = False,
        forces: bool = False,
        box: bool = True,
        program: str = "writebehind",
        program_version: str = "",
        title: str = "",
    ):
        super().__init__(file_name, access_mode)
        if access_mode != "w":
            raise ValueError(
                "AmberDriver writes new AMBER trajectories only (access_mode='w'); read one "
                "with NetCDFIODriver(path, 'r')"
            )
        if n_atoms < 1:
            raise ValueError(f"an AMBER trajectory needs at least one atom, not {n_atoms}")
        self._dims = {
            "frame": 0,
            "spatial": 3,
            "atom": int(n_atoms),
            "cell_spatial": 3,
            "cell_angular": 3,
            "label": 5,
        }
        self._attrs: dict[str, Any] = {"Conventions": "AMBER", "ConventionVersion": "1.0"}
        self._attrs["program"] = program
        self._attrs["programVersion"] = program_version or "unknown"
        if title:
            self._attrs["title"] = title
        f32, f64 = np.dtype(">f4"), np.dtype(">f8")
        chars = np.dtype("S1")
        variables = [
            _Variable("spatial", ("spatial",), chars, {}, _chars(["x", "y", "z"])),
            _Variable("time", ("frame",), f32, {"units": "picosecond"}),
            _Variable("coordinates", ("frame", "atom", "spatial"), f32, {"units": "angstrom"}),
        ]
        if box:
            angular = _chars(["alpha", "beta ", "gamma"])
            variables += [
                _Variable("cell_spatial", ("cell_spatial",), chars, {}, _chars(["a", "b", "c"])),
                _Variable("cell_angular", ("cell_angular", "label"), chars, {}, angular),
                _Variable("cell_lengths", ("frame", "cell_spatial"), f64, {"units": "angstrom"}),
                _Variable("cell_angles", ("frame", "cell_angular"), f64, {"units": "degree"}),
            ]
        if velocities:
            units = {"units": "angstrom/picosecond"}  # no scale_factor: plain angstrom/ps
            variables.append(_Variable("velocities", ("frame", "atom", "spatial"), f32, units))
        if forces:
            units = {"units": "kilocalorie/mole/angstrom"}
            variables.append(_Variable("forces", ("frame", "atom", "spatial"), f32, units))
        self._variables = {v.name: v for v in variables}
        self._bookkeeping: dict[str, dict[str, Any]] = {}  # writebehind_* attrs, not stored
        self._fd: int | None = None
        self._numrecs = 0  # as on disk
        self._data_begin = 0
        self._record_size = 0

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        if self._fd is not None:
            return
        header = self._header()
        self._data_begin = -(-(len(header) + HEADER_RESERVE) // 4096) * 4096
        self._lay_out()
        # Fixed offsets depend on _data_begin: encode again with them.
        header = self._header()
        fd = os.open(self._file_name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        self._fd = fd
        os.pwrite(fd, header, 0)
        for variable in self._variables.values():
            if variable.data is not None:
                os.pwrite(fd, _padded(variable.data.tobytes()), variable.begin)

    def _lay_out(self) -> None:
        offset = self._data_begin
        for variable in self._variables.values():
            if not variable.is_record:
                variable.begin = offset
                offset += variable.vsize(self._dims)
        self._record_size = 0
        for variable in self._variables.values():
            if variable.is_record:
                variable.begin = offset + self._record_size
                self._record_size += variable.vsize(self._dims)

    def _file(self) -> int:
        if self._fd is None:
            raise ValueError(f"the AMBER trajectory {self._file_name!r} is not open")
        return self._fd

    def scan(self) -> Iterator[NodeRecord]:
        for variable in self._variables.values():
            layout = Layout("numeric", variable.dtype.newbyteorder("="), self._shape(variable))
            if variable.dtype.kind == "S":
                layout = Layout("numeric", variable.dtype, self._shape(variable))
            yield NodeRecord(
                variable.name,
                False,
                self.get_attrs(variable.name),
                layout,
                variable.is_record,
                variable.length,
            )

    def _shape(self, variable: _Variable) -> tuple[int, ...]:
        return variable.entry_shape(self._dims)

    def sync(self, durable: bool = False) -> None:
        """Raise the record count to the frames whose every variable is written: after
        the data (fsynced first when ``durable``), so that it counts no unwritten frame."""
        fd = self._file()
        committed = min(v.length for v in self._variables.values() if v.is_record)
        if committed == self._numrecs:
            if durable:
                os.fsync(fd)
            return
        if durable:
            os.fsync(fd)
        os.pwrite(fd, struct.pack(">i", committed), _NUMRECS_OFFSET)
        self._numrecs = committed
        if durable:
            os.fsync(fd)

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)

    def chunk_entries(self, layout: Layout) -> int:
        # Records are not chunked: stage as a netCDF-4 file would (the buffers of before).
        return _chunk_shape(layout)[0]

    # -- structure -------------------------------------------------------------------
    def create_group(self, path: str) -> None:
        raise ValueError(f"cannot create {path!r}: {self.structure_frozen}")

    def create_variable(self, path: str, layout: Layout, appendable: bool) -> None:
        raise ValueError(f"cannot create {path!r}: {self.structure_frozen}")

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        """Set attributes; writebehind's own (``writebehind_*``) are kept in memory only:
        the record count is the committed length of an AMBER file."""
        node = self._attrs if not path else self._variable(path).attrs
        kept = self._bookkeeping.setdefault(path, {})
        stored = {}
        for name, value in attrs.items():
            if name.startswith(ATTR_PREFIX):
                kept[name] = value
            else:
                stored[name] = value
        if not stored:
            return
        previous = dict(node)
        node.update(stored)
        header = self._header()
        if len(header) > self._data_begin:
            node.clear()
            node.update(previous)
            raise ValueError(
                f"no room for more attributes in the header of {self._file_name!r} "
                f"({len(header)} bytes of {self._data_begin})"
            )
        os.pwrite(self._file(), header, 0)

    def get_attrs(self, path: str) -> dict[str, Any]:
        node = self._attrs if not path else self._variable(path).attrs
        return {**node, **self._bookkeeping.get(path, {})}

    def _variable(self, path: str) -> _Variable:
        try:
            return self._variables[path]
        except KeyError:
            raise KeyError(f"No group or variable at {path!r}") from None

    # -- data ------------------------------------------------------------------------
    def write_entries(self, path: str, start: int, entries: Any) -> None:
        variable = self._variable(path)
        if not variable.is_record:
            raise ValueError(f"{path!r} is not appendable")
        fd = self._file()
        data = np.ascontiguousarray(entries, dtype=variable.dtype)
        rows = data.reshape(len(data), -1)  # rows of an array: a row of scalars would be native
        for i, row in enumerate(rows):
            os.pwrite(fd, row.tobytes(), variable.begin + (start + i) * self._record_size)
        variable.length = max(variable.length, start + len(data))

    def write_value(self, path: str, value: Any) -> None:
        variable = self._variable(path)
        if variable.is_record:
            raise ValueError(f"{path!r} is appendable")
        data = np.ascontiguousarray(value, dtype=variable.dtype).reshape(self._shape(variable))
        os.pwrite(self._file(), _padded(data.tobytes()), variable.begin)
        variable.data = data

    def read_entries(self, path: str, start: int, stop: int, step: int = 1) -> Any:
        variable = self._variable(path)
        shape = self._shape(variable)
        nbytes = int(np.prod(shape, dtype=np.int64)) * variable.dtype.itemsize
        fd = self._file()
        rows = [
            np.frombuffer(
                os.pread(fd, nbytes, variable.begin + i * self._record_size), variable.dtype
            ).reshape(shape)
            for i in range(start, stop, step)
        ]
        out = np.empty((len(rows), *shape), variable.dtype.newbyteorder("="))
        for i, row in enumerate(rows):
            out[i] = row
        return out

    def read_value(self, path: str) -> Any:
        variable = self._variable(path)
        assert variable.data is not None
        return variable.data.copy()

    # -- the NetCDF-3 header (CDF-2: 64-bit offsets) -----------------------------------
    def _header(self) -> bytes:
        dims = list(self._dims)
        parts = [b"CDF\x02", struct.pack(">i", self._numrecs)]
        parts += [struct.pack(">ii", _NC_DIMENSION, len(dims))]
        for name, size in self._dims.items():
            parts += [_name(name), struct.pack(">i", size)]
        parts.append(_attr_list(self._attrs))
        parts.append(struct.pack(">ii", _NC_VARIABLE, len(self._variables)))
        for variable in self._variables.values():
            parts.append(_name(variable.name))
            parts.append(struct.pack(">i", len(variable.dims)))
            parts += [struct.pack(">i", dims.index(d)) for d in variable.dims]
            parts.append(_attr_list(variable.attrs))
            parts.append(struct.pack(">i", _NC_TYPES[variable.dtype]))
            parts.append(struct.pack(">iq", variable.vsize(self._dims), variable.begin))
        return b"".join(parts)


def _chars(labels: list[str]) -> np.ndarray[Any, Any]:
    """Labels as the char array the convention stores (``S1``, one row per label)."""
    width = max(len(label) for label in labels)
    if width == 1:
        return np.array(labels, dtype="S1")
    return np.array([list(label.ljust(width)) for label in labels], dtype="S1")


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _name(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">i", len(raw)) + _padded(raw)


def _attr_list(attrs: dict[str, Any]) -> bytes:
    if not attrs:
        return struct.pack(">ii", 0, 0)
    parts = [struct.pack(">ii", _NC_ATTRIBUTE, len(attrs))]
    for name, value in attrs.items():
        parts.append(_name(name))
        if isinstance(value, str):
            raw = value.encode()
            parts.append(struct.pack(">ii", _NC_CHAR, len(raw)) + _padded(raw))
            continue
        array = np.atleast_1d(np.asarray(value))
        if array.dtype.kind in "iub":
            stored = array.astype(">i4")
            if not np.array_equal(stored, array):
                raise ValueError(f"attribute {name!r}: integers beyond 32 bits")
        elif array.dtype.kind == "f":
            stored = array.astype(">f8")
        else:
            raise TypeError(f"attribute {name!r}: an AMBER file stores str and numbers only")
        nc_type = _NC_TYPES[stored.dtype]
        parts.append(struct.pack(">ii", nc_type, len(stored)) + _padded(stored.tobytes()))
    return b"".join(parts)
