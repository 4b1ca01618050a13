"""A backend that holds everything in Python objects: for tests, and as a reference.

``StorageInterface(MemoryBackend())`` is a complete store (sync or async) with no file: the
same checks, codecs, staging, flushes and errors as a netCDF file, at the speed of memory.
Closing the store keeps the data in the backend, so a later store on the same backend
object reads it back (as a later store on the same file would); backends that share a
``files`` mapping see each other's data by name, as files in one directory::

    backend = MemoryBackend()
    with StorageInterface(backend) as store:
        store.traj.x.append(1.0)
    with StorageInterface(backend) as store:
        assert store.traj.x.read() == [1.0]

    files = {}
    StorageInterface(MemoryBackend("run", "w", files=files)).close()
    StorageInterface(MemoryBackend("run", "r", files=files))  # the same data, read-only

Nothing survives the process: ``durable`` changes nothing here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._bookkeeping import LENGTH_ATTR
from ..codecs.base import Layout
from .base import NodeRecord, StorageIODriver, node_at

__all__ = ["MemoryBackend", "MemoryFile"]

#: Entries of a non-numeric appendable variable in one chunk (the netCDF backend's too).
OBJECT_CHUNK_ENTRIES = 1024
#: This many bytes of whole entries plus two make a numeric chunk, at most CHUNK_MAX_ENTRIES
#: (so that the engine stages in buffers of the sizes it uses for netCDF files).
CHUNK_TARGET_BYTES = 48 << 10
CHUNK_MAX_ENTRIES = 8192


@dataclass
class MemoryFile:
    """The data of one memory store: its groups' and variables' attributes and values."""

    groups: dict[str, dict[str, Any]] = field(default_factory=lambda: {"": {}})
    variables: dict[str, _Variable] = field(default_factory=dict)


@dataclass
class _Variable:
    layout: Layout
    appendable: bool
    # appendable numeric: an array of capacity rows (``length`` used); other appendable:
    # a list of str or bytes; fixed: the value
    data: Any = None
    length: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)


class MemoryBackend(StorageIODriver):
    """A backend in memory: groups, variables and attributes as Python objects.

    Parameters
    ----------
    name : str
        The name of its data in ``files`` (and what ``file_name`` reports).
    access_mode : {None, 'w', 'a', 'r'}
        As for files: ``'a'`` and ``'r'`` need data of that name (FileNotFoundError
        otherwise); ``'w'`` starts empty; ``None`` continues the data or creates it at the
        first write.
    files : dict, optional
        Where the data is kept by name, shared by the backends given the same mapping; by
        default one of the backend's own.
    """

    def __init__(
        self,
        name: str = "memory",
        access_mode: str | None = None,
        *,
        files: dict[str, MemoryFile] | None = None,
    ):
        super().__init__(name, access_mode)
        self.files: dict[str, MemoryFile] = {} if files is None else files
        self._open = False
        self.syncs = 0  # syncs asked for (for tests)

    @property
    def _groups(self) -> dict[str, dict[str, Any]]:
        data = self.files.get(self._file_name)
        return {} if data is None else data.groups

    @property
    def _variables(self) -> dict[str, _Variable]:
        data = self.files.get(self._file_name)
        return {} if data is None else data.variables

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        mode = self._access_mode
        if mode in ("a", "r") and self._file_name not in self.files:
            raise FileNotFoundError(f"No such memory store: {self._file_name!r}")
        if mode == "w":
            self.files[self._file_name] = MemoryFile()
        self._open = True

    def _writable(self) -> None:
        if not self._open:
            raise ValueError(f"the memory store {self._file_name!r} is not open")
        if self.read_only:
            raise OSError(f"{self._file_name!r} was opened read-only")
        self.files.setdefault(self._file_name, MemoryFile())  # created at the first write

    @property
    def is_open(self) -> bool:
        return self._open

    def scan(self) -> Iterator[NodeRecord]:
        # Parents before children: a path sorts after its parent's, and its parent's
        # children come before that parent's later siblings' ("a" < "a/b" < "ab").
        nodes: list[tuple[str, bool]] = [(p, True) for p in self._groups if p]
        nodes += [(p, False) for p in self._variables]
        for path, is_group in sorted(nodes, key=lambda node: node[0].split("/")):
            if is_group:
                yield NodeRecord(path, True, dict(self._groups[path]))
                continue
            variable = self._variables[path]
            yield NodeRecord(
                path,
                False,
                dict(variable.attrs),
                variable.layout,
                variable.appendable,
                variable.length if variable.appendable else 0,
            )

    def sync(self, durable: bool = False) -> None:
        self.syncs += 1

    def close(self) -> None:
        self._open = False

    def chunk_entries(self, layout: Layout) -> int:
        if layout.storage != "numeric":
            return OBJECT_CHUNK_ENTRIES
        return min(CHUNK_MAX_ENTRIES, CHUNK_TARGET_BYTES // max(1, layout.entry_nbytes) + 2)

    # -- structure ---------------------------------------------------------------------
    def create_group(self, path: str) -> None:
        self._writable()
        self._groups[path] = {}

    def create_variable(self, path: str, layout: Layout, appendable: bool) -> None:
        self._writable()
        variable = _Variable(layout, appendable)
        if appendable:
            variable.attrs[LENGTH_ATTR] = np.int64(0)  # none committed before a flush
            if layout.storage == "numeric":
                variable.data = np.zeros((0, *layout.shape), dtype=layout.dtype)
            else:
                variable.data = []
        elif layout.storage == "numeric":
            variable.data = np.zeros(layout.shape, dtype=layout.dtype)
        self._variables[path] = variable

    def _attrs_of(self, path: str) -> dict[str, Any]:
        if path in self._groups:
            return self._groups[path]
        if path in self._variables:
            return self._variables[path].attrs
        if not path:
            return {}  # the root of a store not created yet
        raise KeyError(f"No group or variable at {path!r}")

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        self._writable()
        node = self._attrs_of(path)
        for name, value in attrs.items():
            node[name] = _stored_attr(value)

    def get_attrs(self, path: str) -> dict[str, Any]:
        return {name: _copy(value) for name, value in self._attrs_of(path).items()}

    # -- data --------------------------------------------------------------------------
    def _variable(self, path: str) -> _Variable:
        return node_at(self._variables, path, "variable")

    def write_entries(self, path: str, start: int, entries: Any) -> None:
        self._writable()
        variable = self._variable(path)
        count = len(entries)
        end = start + count
        if variable.layout.storage != "numeric":
            items: list[Any] = variable.data
            if end > len(items):
                items.extend([_empty(variable.layout)] * (end - len(items)))
            items[start:end] = list(entries)
        else:
            data: np.ndarray[Any, Any] = variable.data
            if end > len(data):  # grow by doubling: appends cost amortized O(1)
                grown = np.zeros((max(end, 2 * len(data)), *data.shape[1:]), dtype=data.dtype)
                grown[: variable.length] = data[: variable.length]
                variable.data = data = grown
            data[start:end] = entries  # a copy: the engine reuses its buffer
        variable.length = max(variable.length, end)

    def write_value(self, path: str, value: Any) -> None:
        self._writable()
        variable = self._variable(path)
        if variable.layout.storage == "numeric":
            variable.data = np.array(value, dtype=variable.layout.dtype, copy=True)
        else:
            variable.data = value

    def read_entries(self, path: str, start: int, stop: int, step: int = 1) -> Any:
        variable = self._variable(path)
        rows = range(start, stop, step)
        if variable.layout.storage == "numeric":
            return variable.data[np.asarray(rows, dtype=np.intp)]
        out = np.empty(len(rows), dtype=object)
        out[:] = [variable.data[i] for i in rows]
        return out

    def read_value(self, path: str) -> Any:
        variable = self._variable(path)
        if variable.layout.storage == "numeric":
            return np.array(variable.data, copy=True)
        return variable.data


def _empty(layout: Layout) -> Any:
    return "" if layout.storage == "string" else b""


def _stored_attr(value: Any) -> Any:
    """``value`` as a netCDF attribute reads back: numbers as numpy ones, arrays copied."""
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, bool | int | float):
        return np.asarray(value)[()]
    return value


def _copy(value: Any) -> Any:
    return value.copy() if isinstance(value, np.ndarray) else value
