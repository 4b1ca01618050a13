"""The header of a NetCDF-3 file (classic CDF-1 and 64-bit-offset CDF-2), encoded and parsed.

The format is NetCDF's "classic" specification
(https://docs.unidata.ucar.edu/netcdf-c/current/file_format_specifications.html): magic,
record count, dimensions, global attributes, then each variable's name, dimensions,
attributes, type, size (``vsize``) and offset of its data (``begin``: 32 bits in CDF-1,
64 in CDF-2). All numbers are big-endian. The AMBER driver writes headers with
:func:`encode_header` and reads those of trajectories it continues with
:func:`parse_header`, which gives back what :func:`encode_header` takes: encoding a parsed
header gives the same bytes (attribute types are kept), so a header can be rewritten.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "HeaderError",
    "ParsedHeader",
    "ParsedVariable",
    "TruncatedHeader",
    "encode_header",
    "parse_header",
]

NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
#: The NetCDF-3 types, by their numbers, as big-endian numpy dtypes.
NC_DTYPES = {
    1: np.dtype("i1"),
    2: np.dtype("S1"),
    3: np.dtype(">i2"),
    4: np.dtype(">i4"),
    5: np.dtype(">f4"),
    6: np.dtype(">f8"),
}
NC_TYPES = {dtype: number for number, dtype in NC_DTYPES.items()}
NUMRECS_OFFSET = 4  # after the magic "CDF\x01" or "CDF\x02"
STREAMING = 0xFFFFFFFF  # a record count a writer left unknown


class HeaderError(ValueError):
    """Not a NetCDF-3 header this module reads."""


class TruncatedHeader(HeaderError):
    """The bytes end before the header does: parse more of the file."""


@dataclass
class ParsedVariable:
    name: str
    dims: tuple[str, ...]
    dtype: np.dtype[Any]
    attrs: dict[str, Any]
    vsize: int
    begin: int


@dataclass
class ParsedHeader:
    version: int  # 1: classic, 2: 64-bit offset
    numrecs: int
    dims: dict[str, int]  # the record dimension's size is 0
    attrs: dict[str, Any]
    variables: list[ParsedVariable] = field(default_factory=list)
    size: int = 0  # bytes of the header


# -- encoding -------------------------------------------------------------------------------
def encode_header(
    version: int,
    numrecs: int,
    dims: dict[str, int],
    attrs: dict[str, Any],
    variables: list[tuple[str, tuple[str, ...], np.dtype[Any], dict[str, Any], int, int]],
) -> bytes:
    """The header: ``variables`` as (name, dims, dtype, attrs, vsize, begin)."""
    names = list(dims)
    parts = [b"CDF" + bytes([version]), struct.pack(">i", numrecs)]
    parts += [struct.pack(">ii", NC_DIMENSION, len(dims)) if dims else struct.pack(">ii", 0, 0)]
    for name, size in dims.items():
        parts += [_name(name), struct.pack(">i", size)]
    parts.append(_attr_list(attrs))
    if variables:
        parts.append(struct.pack(">ii", NC_VARIABLE, len(variables)))
    else:
        parts.append(struct.pack(">ii", 0, 0))
    offset = ">iq" if version == 2 else ">ii"
    for name, var_dims, dtype, var_attrs, vsize, begin in variables:
        parts.append(_name(name))
        parts.append(struct.pack(">i", len(var_dims)))
        parts += [struct.pack(">i", names.index(d)) for d in var_dims]
        parts.append(_attr_list(var_attrs))
        parts.append(struct.pack(">i", NC_TYPES[dtype]))
        parts.append(struct.pack(offset, vsize, begin))
    return b"".join(parts)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _name(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">i", len(raw)) + padded(raw)


def _attr_list(attrs: dict[str, Any]) -> bytes:
    if not attrs:
        return struct.pack(">ii", 0, 0)
    parts = [struct.pack(">ii", NC_ATTRIBUTE, len(attrs))]
    for name, value in attrs.items():
        parts.append(_name(name))
        if isinstance(value, str):
            raw = value.encode()
            parts.append(struct.pack(">ii", NC_TYPES[np.dtype("S1")], len(raw)) + padded(raw))
            continue
        array = np.atleast_1d(np.asarray(value))
        stored = _attr_array(name, array)
        nc_type = NC_TYPES[stored.dtype]
        parts.append(struct.pack(">ii", nc_type, len(stored)) + padded(stored.tobytes()))
    return b"".join(parts)


def _attr_array(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``array`` in a NetCDF-3 type: its own if it has one (as a parsed attribute does),
    else 32-bit integers or float64."""
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if array.dtype.kind in "if" and big in NC_TYPES:
        return array.astype(big)
    if array.dtype.kind in "iub":
        stored = array.astype(">i4")
        if not np.array_equal(stored, array):
            raise ValueError(f"attribute {name!r}: integers beyond 32 bits")
        return stored
    if array.dtype.kind == "f":
        return array.astype(">f8")
    raise TypeError(f"attribute {name!r}: a NetCDF-3 file stores str and numbers only")


# -- parsing --------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise TruncatedHeader(f"the header needs more than {len(self.data)} bytes")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def integer(self) -> int:
        return int(struct.unpack(">i", self.take(4))[0])

    def offset(self, version: int) -> int:
        return int(struct.unpack(">q" if version == 2 else ">i", self.take(4 * version))[0])

    def name(self) -> str:
        size = self.integer()
        if not 0 < size <= 4096:
            raise HeaderError(f"a name of {size} bytes")
        raw = self.take(size)
        self.take(-size % 4)
        return raw.decode("utf-8", errors="replace")

    def list_head(self, tag: int) -> int:
        found, count = self.integer(), self.integer()
        if (found, count) == (0, 0):
            return 0
        if found != tag or count < 0:
            raise HeaderError(f"expected a list of tag {tag:#x}, found {found:#x}")
        return count

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(self.list_head(NC_ATTRIBUTE)):
            name = self.name()
            dtype = self.dtype()
            count = self.integer()
            raw = self.take(count * dtype.itemsize)
            self.take(-len(raw) % 4)
            if dtype.kind == "S":
                out[name] = raw.decode("utf-8", errors="replace")
            else:  # one number as a numpy scalar of its type, as netCDF4 gives it
                values = np.frombuffer(raw, dtype)
                out[name] = values[0] if count == 1 else values.copy()
        return out

    def dtype(self) -> np.dtype[Any]:
        number = self.integer()
        if number not in NC_DTYPES:
            raise HeaderError(f"type {number} is not a NetCDF-3 type")
        return NC_DTYPES[number]


def parse_header(data: bytes) -> ParsedHeader:
    """Parse the NetCDF-3 header at the start of ``data``.

    Raises
    ------
    TruncatedHeader
        ``data`` ends inside the header (parse a longer prefix of the file).
    HeaderError
        Not a classic or 64-bit-offset NetCDF-3 file (a NetCDF-4/HDF5 or CDF-5 file,
        a record count left unknown, a damaged header).
    """
    if data[:4] == b"\x89HDF":
        raise HeaderError("a NetCDF-4 (HDF5) file, not NetCDF-3")
    if data[:3] != b"CDF" or len(data) < 4 or data[3] not in (1, 2):
        kind = "a 64-bit-data (CDF-5) file" if data[:4] == b"CDF\x05" else "not a NetCDF-3 file"
        raise HeaderError(kind)
    reader = _Reader(data)
    reader.take(4)
    version = data[3]
    numrecs = reader.integer() & 0xFFFFFFFF
    if numrecs == STREAMING:
        raise HeaderError("its record count was never written (a streamed file)")
    dims: dict[str, int] = {}
    for _ in range(reader.list_head(NC_DIMENSION)):
        name = reader.name()
        dims[name] = reader.integer()
    header = ParsedHeader(version, numrecs, dims, reader.attrs())
    names = list(dims)
    for _ in range(reader.list_head(NC_VARIABLE)):
        name = reader.name()
        ids = [reader.integer() for _ in range(reader.integer())]
        if any(not 0 <= i < len(names) for i in ids):
            raise HeaderError(f"variable {name!r} has a dimension that does not exist")
        attrs = reader.attrs()
        dtype = reader.dtype()
        vsize = reader.integer() & 0xFFFFFFFF
        begin = reader.offset(version)
        dim_names = tuple(names[i] for i in ids)
        header.variables.append(ParsedVariable(name, dim_names, dtype, attrs, vsize, begin))
    header.size = reader.at
    return header
