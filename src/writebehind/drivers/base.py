"""The driver contract: synchronous storage of laid-out variables, no Python types.

A driver (a *backend*) stores groups, variables with a :class:`~writebehind.codecs.Layout`,
their entries and attributes. It knows nothing of codecs, threads, queues or stores: the
engine calls every method from its one writer thread (``chunk_entries`` and ``check_name``
excepted: they are pure), so an implementation needs no locking of its own, and no method
calls back into the engine or a store. A new backend is one subclass of
:class:`StorageIODriver` that passes the shared contract suite (the tests'
``DriverContract``, subclassed once per backend). Built in: ``NetCDFBackend`` (netCDF-4
files), ``MemoryBackend`` (Python objects, for tests), ``ZarrBackend`` and
``IcechunkBackend`` (Zarr v3 stores), ``AmberDriver`` (AMBER NetCDF-3 trajectories).

What the engine relies on, beyond storing what it is given:

- **Whole chunks per write.** The engine stages a variable's appends in buffers of whole
  chunks of :meth:`~StorageIODriver.chunk_entries` entries and writes them from the chunk's
  first entry, so a backend that stores in chunks gets each chunk in one write.
- **Committed lengths.** :meth:`~StorageIODriver.commit_lengths` is the flush: what it
  returns from survives the process (and, ``durable``, the OS); entries written beyond a
  committed length are not part of the variable after a crash. A backend reports the
  committed length of each appendable variable in its attribute ``LENGTH_ATTR`` (see
  ``writebehind._bookkeeping``, which names every bookkeeping attribute).
- **Names.** The store asks :meth:`~StorageIODriver.check_name` before a name reaches the
  backend; the default is netCDF's rule (``_paths.check_name``), which both built-in
  backends keep, so that code tested on the memory backend runs on netCDF files. A backend
  that holds other names overrides it.
- **Recovery.** :meth:`~StorageIODriver.recover` puts back what a killed writer left, for a
  format that needs it (netCDF-4 files do); ``writebehind recover`` and
  :func:`writebehind.recover` reach it through the backend a target names (``_targets``).
- **Values.** The store refuses, on every backend, ``str`` values with NUL and attribute
  names starting with ``_`` or ``writebehind_`` (netCDF's limits, kept for all backends for
  the same reason).

Paths are ``"a/b/c"`` relative to the root group, whose path is ``""``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from .. import _paths
from .._bookkeeping import LENGTH_ATTR
from ..codecs.base import Layout

__all__ = ["NodeRecord", "StorageIODriver", "node_at"]

_Node = TypeVar("_Node")


def node_at(nodes: Mapping[str, _Node], path: str, what: str, where: str = "") -> _Node:
    """``nodes[path]``; a missing one raises ``KeyError("No {what} at {path!r}")``, with
    `` in {where!r}`` after it when ``where`` (a backend's storage) is given."""
    try:
        return nodes[path]
    except KeyError:
        place = f" in {where!r}" if where else ""
        raise KeyError(f"No {what} at {path!r}{place}") from None


@dataclass
class NodeRecord:
    """What a driver's :meth:`~StorageIODriver.scan` reports of one group or variable."""

    path: str
    is_group: bool
    attrs: dict[str, Any] = field(default_factory=dict)
    layout: Layout | None = None
    appendable: bool = False
    length: int = 0  # entries along the growing dimension, as the file reports it


class RecoveryOutcome(Protocol):
    """What a backend's recovery reports (the netCDF backend's ``RecoveryReport``)."""

    @property
    def readable_after(self) -> bool | None:
        """Whether the storage reads after recovery (None: not checked)."""

    def summary(self) -> dict[str, Any]:
        """The report as plain JSON-able values."""

    def describe(self) -> str:
        """The report for a person, a few lines."""


class StorageIODriver(ABC):
    """Abstract base of storage drivers.

    Parameters
    ----------
    file_name : str
        Where the data lives.
    access_mode : {None, 'w', 'a', 'r'}
        ``None`` appends to an existing file or creates a new one (only when something is
        first written, so reading a missing file never creates an empty one); ``'w'``
        creates, truncating; ``'a'`` appends to a file that must exist; ``'r'`` reads only.
    """

    #: A lock the engine holds around every call into the driver, shared by all drivers of
    #: a library that is process-wide and not thread-safe (each store has its own writer
    #: thread); None when calls on different files may run at once.
    library_lock: Any = None
    #: Why a killed writer leaves nothing for :meth:`recover` to do, said of a target
    #: (``"{target}: ..."``) by ``writebehind recover``; "" for a backend that recovers.
    no_recovery_needed: str = "this backend keeps nothing a killed writer leaves half-done"
    #: Why no group or variable can be created in the open file ("" when they can, the
    #: default); set by ``open``, for files whose format cannot hold what writebehind makes.
    structure_frozen: str = ""

    def __init__(self, file_name: str | bytes | os.PathLike[Any], access_mode: str | None = None):
        if access_mode not in (None, "w", "a", "r"):
            raise ValueError(f"access_mode must be None, 'w', 'a' or 'r', not {access_mode!r}")
        self._file_name = os.fsdecode(file_name)  # str, bytes or os.PathLike
        self._access_mode = access_mode

    @classmethod
    def recover(
        cls, target: str, *, force: bool = False, write: bool = True
    ) -> RecoveryOutcome | None:
        """Put back what a writer killed while writing ``target`` left, if it needs it.

        ``force`` checks ``target`` even if it says it was closed cleanly; without ``write``
        nothing is changed (what a read-only open does). None: this backend never needs
        recovery (the default; ``no_recovery_needed`` says why).
        """
        return None

    @property
    def file_name(self) -> str:
        return self._file_name

    @property
    def access_mode(self) -> str | None:
        return self._access_mode

    @property
    def read_only(self) -> bool:
        return self._access_mode == "r"

    # -- lifecycle -------------------------------------------------------------------
    @abstractmethod
    def open(self) -> None:
        """Open the storage as ``access_mode`` says (FileNotFoundError if it must exist).

        The engine calls ``scan`` next, before any other method; a closed backend may be
        opened again (by the next store on it).
        """

    @abstractmethod
    def scan(self) -> Iterator[NodeRecord]:
        """Every group and variable, parents before children (the root is not reported)."""

    @abstractmethod
    def sync(self, durable: bool = False) -> None:
        """Make everything written so far reach the file; ``durable`` also fsyncs it."""

    def commit_lengths(self, lengths: dict[str, int], durable: bool) -> None:
        """Sync, committing ``lengths`` (path -> entries) of appendable variables.

        On return, every entry written before survives the process being killed (the OS
        crashing too, if ``durable``), and each length in ``lengths`` is the variable's
        committed length (reported by ``scan`` in its ``LENGTH_ATTR`` attribute). A length
        never counts entries that did not reach the storage, even if this fails half-way.
        With no ``lengths``, this is ``sync(durable)``.

        The default syncs the entries, sets each ``LENGTH_ATTR``, and syncs again; a backend
        that commits otherwise (atomically, say) overrides it.
        """
        if lengths:
            # Entries first: when a sync fails (a full disk), HDF5 may drop the entries and
            # still write a length set before it, at close or at exit; the file would then
            # count rows of zeros as entries. A durable flush fsyncs them here too, so that
            # after a power loss no length on disk counts entries the disk does not hold.
            self.sync(durable)
            for path in sorted(lengths):
                self.set_attrs(path, {LENGTH_ATTR: np.int64(lengths[path])})
        self.sync(durable)

    @abstractmethod
    def close(self) -> None:
        """Sync and close; closing twice is allowed. Commits no length."""

    def stored_bytes(self) -> int:
        """Bytes the storage takes (for ``writebehind inspect``); the default is the size
        of the file ``file_name``."""
        return os.path.getsize(self._file_name)

    # -- rules -----------------------------------------------------------------------
    def check_name(self, name: object) -> str:
        """Return ``name`` if this backend can hold it as a group or variable name.

        Pure: called on the caller's thread, before anything is enqueued. The default is
        netCDF's rule.

        Raises
        ------
        TypeError
            ``name`` is not a ``str``.
        ValueError
            The backend cannot hold it (the message says why).
        """
        return _paths.check_name(name)

    # -- layout ----------------------------------------------------------------------
    @abstractmethod
    def chunk_entries(self, layout: Layout) -> int:
        """How many entries of ``layout`` one chunk of an appendable variable holds (>= 1).

        The engine stages appends in buffers of whole chunks of this many entries. Pure:
        it depends on ``layout`` alone and may be called from any thread, before ``open``.
        """

    # -- structure -------------------------------------------------------------------
    @abstractmethod
    def create_group(self, path: str) -> None:
        """Create the group at ``path`` (its parent exists)."""

    @abstractmethod
    def create_variable(self, path: str, layout: Layout, appendable: bool) -> None:
        """Create a variable (its group exists); appendable ones grow along axis 0."""

    @abstractmethod
    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        """Set attributes of the group or variable at ``path`` (``""`` is the root)."""

    @abstractmethod
    def get_attrs(self, path: str) -> dict[str, Any]:
        """All attributes of the node at ``path``."""

    def root_attrs(self) -> dict[str, Any]:
        """The root group's attributes, read after ``open`` ({} while there is no file)."""
        return self.get_attrs("")

    # -- data ------------------------------------------------------------------------
    @abstractmethod
    def write_entries(self, path: str, start: int, entries: Any) -> None:
        """Write entries ``start``, ``start + 1``... of an appendable variable.

        ``entries`` is an ndarray of shape ``(n, *layout.shape)`` for numeric layouts and a
        sequence of ``str`` or ``bytes`` otherwise. Writing past the end grows the variable.
        A numeric ``entries`` is a view of the engine's staging buffer, which is reused for
        later appends once this returns: a driver that keeps the data must copy it.
        """

    @abstractmethod
    def write_value(self, path: str, value: Any) -> None:
        """Overwrite the whole value of a fixed variable."""

    @abstractmethod
    def read_entries(self, path: str, start: int, stop: int, step: int = 1) -> Any:
        """Entries ``range(start, stop, step)`` of an appendable variable (``stop`` is the
        logical length or less; rows beyond it are never read)."""

    @abstractmethod
    def read_value(self, path: str) -> Any:
        """The whole value of a fixed variable."""
