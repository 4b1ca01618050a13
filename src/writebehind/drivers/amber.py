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

Opened on an existing AMBER trajectory to append (``access_mode`` None or ``'a'``), the
driver parses its header (:mod:`._netcdf3`: classic or 64-bit offset, written by any
program) and continues it: new frames go after the ``numrecs`` frames the file counts, in
the file's own layout, and ``numrecs`` is raised as above. The atom count must be the
file's, and the variables written must be the file's.

A driver stores what it is given (here big-endian, as NetCDF-3 requires); converting units
(nanometer to angstrom) is the caller's business: ``writebehind.openmm`` does it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..codecs.base import ATTR_PREFIX, Layout
from ._amber_convention import (
    AmberVariable,
    cell_lengths_and_angles,
    check_trajectory,
    convention_layout,
)
from ._netcdf3 import (
    NUMRECS_OFFSET,
    HeaderError,
    ParsedHeader,
    TruncatedHeader,
    encode_header,
    padded,
    parse_header,
)
from .base import NodeRecord, StorageIODriver
from .netcdf import chunk_shape

__all__ = ["AmberDriver", "cell_lengths_and_angles"]

#: Bytes kept free after the header, so that attributes set later fit without moving data.
HEADER_RESERVE = 4096


class AmberDriver(StorageIODriver):
    """Writes an AMBER NetCDF trajectory of ``n_atoms`` atoms, new or continued.

    Parameters
    ----------
    file_name : str
        Path of the trajectory (``.nc``).
    access_mode : {None, 'a', 'w'}
        As a store's: None continues the trajectory if the file exists and creates it if
        not; ``'a'`` continues one that must exist (``FileNotFoundError`` otherwise);
        ``'w'`` creates it, replacing a file that exists. Reading (``'r'``) is refused:
        read an AMBER file with ``NetCDFIODriver(path, 'r')``, mdtraj or MDAnalysis.
    n_atoms : int, optional
        Atoms per frame: needed to create a file; a continued file must hold this many
        (None: whatever it holds).
    velocities, forces : bool, optional
        Whether the file has ``velocities`` (angstrom/picosecond) and ``forces``
        (kilocalorie/mole/angstrom) variables. None: not in a new file; as the file has
        them in a continued one (which must have them, or not, as asked when not None).
    box : bool, optional
        Whether it has the unit cell (``cell_lengths``, angstrom, and ``cell_angles``,
        degree), as a periodic system needs. None: in a new file; as the file has it in a
        continued one.
    program, program_version, title : str
        The global attributes of the same names (in a new file).

    Opening raises ``ValueError`` when a file to continue is not a NetCDF-3 AMBER
    trajectory or differs from what is asked (atoms, velocities, forces, box).
    """

    structure_frozen = (
        "an AMBER trajectory holds the variables of the AMBER convention only "
        "(store other values in a writebehind file)"
    )

    def __init__(
        self,
        file_name: str | bytes | os.PathLike[Any],
        access_mode: str | None = None,
        *,
        n_atoms: int | None = None,
        velocities: bool | None = None,
        forces: bool | None = None,
        box: bool | None = None,
        program: str = "writebehind",
        program_version: str = "",
        title: str = "",
    ):
        super().__init__(file_name, access_mode)
        if access_mode == "r":
            raise ValueError(
                "AmberDriver writes AMBER trajectories (access_mode None, 'a' or 'w'); read "
                "one with NetCDFIODriver(path, 'r'), mdtraj or MDAnalysis"
            )
        if n_atoms is not None and n_atoms < 1:
            raise ValueError(f"an AMBER trajectory needs at least one atom, not {n_atoms}")
        self._n_atoms = n_atoms
        self._wanted = {"velocities": velocities, "forces": forces, "box": box}
        self._new_attrs: dict[str, Any] = {"Conventions": "AMBER", "ConventionVersion": "1.0"}
        self._new_attrs["program"] = program
        self._new_attrs["programVersion"] = program_version or "unknown"
        if title:
            self._new_attrs["title"] = title
        self._version = 2  # 64-bit offsets (CDF-2); a continued file keeps its own
        self._dims: dict[str, int] = {}
        self._attrs: dict[str, Any] = {}
        self._variables: dict[str, AmberVariable] = {}
        self._bookkeeping: dict[str, dict[str, Any]] = {}  # writebehind_* attrs, not stored
        self._fd: int | None = None
        self._numrecs = 0  # as on disk
        self._data_begin = 0
        self._record_size = 0
        self._header_rewritable = True  # False when re-encoding a file's header changes it

    @property
    def n_atoms(self) -> int | None:
        """Atoms per frame (None before a file to append to is opened)."""
        return self._dims.get("atom", self._n_atoms)

    @property
    def record_variables(self) -> tuple[str, ...]:
        """The variables with one entry per frame (each must be appended to every frame)."""
        return tuple(v.name for v in self._variables.values() if v.is_record)

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Create the trajectory (``'w'``, or None on a missing file) or continue it.

        Raises
        ------
        FileNotFoundError
            ``'a'`` and no file.
        ValueError
            A new file and no ``n_atoms``; a file to continue that is not an AMBER
            trajectory, holds another number of atoms, or lacks (or has) the velocities,
            forces or box asked not (or asked) for.
        """
        if self._fd is not None:
            return
        exists = os.path.exists(self._file_name)
        if self._access_mode == "a" and not exists:
            raise FileNotFoundError(f"No such AMBER trajectory: {self._file_name!r}")
        if self._access_mode == "w" or not exists:
            self._create()
        else:
            self._continue()

    def _create(self) -> None:
        if self._n_atoms is None:
            raise ValueError(
                f"n_atoms is needed to create the AMBER trajectory {self._file_name!r}"
            )
        self._dims, variables = convention_layout(
            self._n_atoms,
            velocities=bool(self._wanted["velocities"]),
            forces=bool(self._wanted["forces"]),
            box=self._wanted["box"] is not False,
        )
        self._attrs = dict(self._new_attrs)
        self._variables = {v.name: v for v in variables}
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
                os.pwrite(fd, padded(variable.data.tobytes()), variable.begin)

    def _continue(self) -> None:
        fd = os.open(self._file_name, os.O_RDWR)
        try:
            raw, header = _read_header(fd)
            self._adopt(header)
            for variable in self._variables.values():
                if not variable.is_record:
                    nbytes = variable.vsize(self._dims)
                    data = np.frombuffer(os.pread(fd, nbytes, variable.begin), variable.dtype)
                    size = int(np.prod(self._shape(variable), dtype=np.int64))
                    variable.data = data[:size].reshape(self._shape(variable)).copy()
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._header_rewritable = self._header() == raw[: header.size]

    def _adopt(self, header: ParsedHeader) -> None:
        """Take the layout of the trajectory ``header`` describes, after checking it."""
        where = repr(self._file_name)
        check_trajectory(header, where, self._n_atoms, self._wanted)
        self._version = header.version
        self._dims = dict(header.dims)
        self._attrs = dict(header.attrs)
        self._numrecs = header.numrecs
        self._variables = {}
        for parsed in header.variables:
            variable = AmberVariable(parsed.name, parsed.dims, parsed.dtype, parsed.attrs)
            variable.begin = parsed.begin
            if variable.dims and "frame" in variable.dims[1:]:
                raise ValueError(f"{where}: {parsed.name!r} has frame as an inner dimension")
            if parsed.vsize != variable.vsize(self._dims) and parsed.vsize != 0xFFFFFFFF:
                raise ValueError(f"{where}: the size of {parsed.name!r} in its header is wrong")
            if variable.is_record:
                variable.length = header.numrecs
            self._variables[parsed.name] = variable
        self._record_size = sum(
            v.vsize(self._dims) for v in self._variables.values() if v.is_record
        )
        self._data_begin = min(v.begin for v in self._variables.values())

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

    def _shape(self, variable: AmberVariable) -> tuple[int, ...]:
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
        os.pwrite(fd, struct.pack(">i", committed), NUMRECS_OFFSET)
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

    def abandon(self) -> None:
        """Close without raising the record count: the frames written since the last
        :meth:`sync` are not counted, as after a kill (for a caller that failed midway)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    @property
    def frames(self) -> int:
        """The frames the file counts (its record count as last synced)."""
        return self._numrecs

    def chunk_entries(self, layout: Layout) -> int:
        # Records are not chunked: stage as a netCDF-4 file would (the buffers of before).
        return chunk_shape(layout)[0]

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
        if not self._header_rewritable:
            raise ValueError(
                f"cannot set attributes in {self._file_name!r}: its header, written by another "
                "program, would not be rewritten exactly"
            )
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

    def _variable(self, path: str) -> AmberVariable:
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
        os.pwrite(self._file(), padded(data.tobytes()), variable.begin)
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

    # -- the NetCDF-3 header -----------------------------------------------------------
    def _header(self) -> bytes:
        variables = [
            (v.name, v.dims, v.dtype, v.attrs, v.vsize(self._dims), v.begin)
            for v in self._variables.values()
        ]
        return encode_header(self._version, self._numrecs, self._dims, self._attrs, variables)


def _read_header(fd: int) -> tuple[bytes, ParsedHeader]:
    """The first bytes of the file (at least its header) and the header parsed."""
    size = 1 << 16
    while True:
        raw = os.pread(fd, size, 0)
        try:
            return raw, parse_header(raw)
        except TruncatedHeader:
            if len(raw) < size:  # the whole file, and still no end of the header
                raise ValueError("not an AMBER trajectory: its header is cut short") from None
            size *= 4
        except HeaderError as exc:
            raise ValueError(f"not an AMBER trajectory: {exc}") from None
