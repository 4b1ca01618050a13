"""How the Zarr backend lays out a variable: dtype, fill value, chunks, stored values.

Pure functions of a :class:`~writebehind.codecs.Layout` (and of an array's metadata), apart
from the backend's I/O, so that each rule is read and tested on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
from zarr import AsyncArray
from zarr.core.dtype import VariableLengthBytes, VariableLengthUTF8

from ..codecs.base import Layout

__all__ = [
    "CHUNK_TARGET_BYTES",
    "OBJECT",
    "as_read",
    "as_stored",
    "chunk_keys",
    "chunk_shape",
    "empty",
    "fill_value",
    "storage_of",
    "whole_chunks",
    "zarr_dtype",
]

#: As the netCDF backend: about 1 MiB of whole entries a chunk, at most 8192 entries; an
#: entry over CHUNK_SLICE_BYTES is stored in slices along its first axis.
CHUNK_TARGET_BYTES = 1 << 20
CHUNK_MAX_ENTRIES = 8192
CHUNK_SLICE_BYTES = 1 << 20
OBJECT_CHUNK_ENTRIES = 1024
OBJECT = np.dtype(object)


def zarr_dtype(layout: Layout) -> Any:
    if layout.storage == "string":
        return VariableLengthUTF8()
    if layout.storage == "bytes":
        return VariableLengthBytes()
    return layout.dtype


def fill_value(layout: Layout) -> Any:
    return {"string": "", "bytes": b""}.get(layout.storage, 0)


def chunk_shape(layout: Layout, appendable: bool) -> tuple[int, ...]:
    """About ``CHUNK_TARGET_BYTES`` of whole entries (an entry over ``CHUNK_SLICE_BYTES``
    in equal slices of its first axis); a fixed value is one chunk."""
    entry_shape = tuple(max(1, n) for n in layout.shape)
    if not appendable:
        return entry_shape
    if layout.storage != "numeric":
        return (OBJECT_CHUNK_ENTRIES,)
    entry_bytes = max(1, int(np.prod(entry_shape, dtype=np.int64)) * layout.dtype.itemsize)
    if entry_bytes <= CHUNK_SLICE_BYTES:
        entries = max(1, min(CHUNK_MAX_ENTRIES, CHUNK_TARGET_BYTES // entry_bytes))
        return (entries, *entry_shape)
    pieces = -(-entry_bytes // CHUNK_SLICE_BYTES)
    return (1, -(-entry_shape[0] // pieces), *entry_shape[1:])


def chunk_keys(array: AsyncArray[Any], start: int, stop: int) -> list[str]:
    """The keys (relative to the array) of the chunks holding entries ``start:stop``."""
    chunks = array.metadata.chunks
    if not chunks:  # a 0-d array: one chunk
        return [array.metadata.encode_chunk_key(())]
    shape = array.shape
    ranges = [range(start // chunks[0], (stop - 1) // chunks[0] + 1)]
    ranges += [range(max(1, -(-n // c))) for n, c in zip(shape[1:], chunks[1:], strict=True)]
    return [array.metadata.encode_chunk_key(coords) for coords in itertools.product(*ranges)]


def whole_chunks(
    chunks: tuple[int, ...], start: int, entries: np.ndarray[Any, Any], fill: Any
) -> list[tuple[tuple[int, ...], np.ndarray[Any, Any]]] | None:
    """Entries ``start:start + len(entries)`` as whole chunks of shape ``chunks``: each
    chunk's grid coordinates and data (a view of ``entries`` when a chunk is all in it, else
    a copy padded with ``fill``, as zarr pads an edge chunk). None when ``start`` is not at
    a chunk's start (the chunk holds written entries: zarr merges them) or an entry has an
    empty axis."""
    rows = chunks[0] if chunks else 0
    shape = entries.shape
    if not rows or start % rows or len(shape) != len(chunks) or 0 in shape[1:]:
        return None
    first = start // rows
    ranges = [range(-(-n // size)) for n, size in zip(shape, chunks, strict=True)]
    out = []
    for local in itertools.product(*ranges):
        where = tuple(
            slice(i * size, min((i + 1) * size, n))
            for i, size, n in zip(local, chunks, shape, strict=True)
        )
        data = entries[where]
        if data.shape != chunks or not data.flags.c_contiguous:
            block = np.full(chunks, fill, dtype=entries.dtype)
            block[tuple(slice(0, n) for n in data.shape)] = data
            data = block
        out.append(((first + local[0], *local[1:]), data))
    return out


def as_stored(entries: Any, layout: Layout) -> np.ndarray[Any, Any]:
    """A copy of ``entries`` as zarr writes them (numeric, or an object array)."""
    if layout.storage == "numeric":
        return np.array(entries, dtype=layout.dtype, copy=True)
    out = np.empty(len(entries), dtype=OBJECT)
    if layout.storage == "string":
        out[:] = [str(item) for item in entries]
    else:
        out[:] = [bytes(item) for item in entries]
    return out


def as_read(values: np.ndarray[Any, Any], layout: Layout) -> np.ndarray[Any, Any]:
    if layout.storage == "numeric":
        return values
    out = np.empty(values.shape, dtype=OBJECT)
    convert: Callable[[Any], Any] = str if layout.storage == "string" else bytes
    out.reshape(-1)[:] = [convert(item) for item in values.reshape(-1)]
    return out


def empty(shape: tuple[int, ...], layout: Layout) -> np.ndarray[Any, Any]:
    return np.empty(shape, dtype=layout.dtype if layout.storage == "numeric" else OBJECT)


def storage_of(array: AsyncArray[Any]) -> tuple[str, np.dtype[Any]]:
    """The layout's ``storage`` and ``dtype`` of a stored array."""
    data_type = array.metadata.data_type
    if isinstance(data_type, VariableLengthUTF8):
        return "string", OBJECT
    if isinstance(data_type, VariableLengthBytes):
        return "bytes", OBJECT
    return "numeric", np.dtype(data_type.to_native_dtype())
