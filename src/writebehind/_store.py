"""StorageInterface: the synchronous face of a store."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any, Generic, TypeVar, Unpack

from ._core import DEFAULT_MAX_PENDING_BYTES, DriverFacade, StoreCore, finalize
from ._engine import EngineStats
from ._node import NodeBase, StorageInterfaceDirVar
from ._targets import BackendOptions, Target, backend_for, split_options
from .drivers.base import StorageIODriver

__all__ = ["OpenOptions", "StorageInterface", "StoreBase", "close_failure_noted", "open"]

NodeT = TypeVar("NodeT", bound=NodeBase)


class OpenOptions(BackendOptions, total=False):
    """The keyword arguments of ``open`` and ``open_async``: the backend's
    (``BackendOptions``) and the store's."""

    #: Bytes of pending entries at which an append waits for the writer.
    max_pending_bytes: int
    #: The pint registry that decodes quantities (the application's own, by default).
    unit_registry: Any


class StoreBase(Generic[NodeT]):
    """What the sync and async stores share: the opening, navigation and properties (none
    of it waits)."""

    #: The class of the store's nodes.
    _node_class: type[NodeT]
    #: Whether creating the store waits for the open (the async store waits when entered).
    _waits_for_open = True

    def __init__(
        self,
        storage_driver: StorageIODriver | DriverFacade,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        unit_registry: Any = None,
    ):
        core = StoreCore(
            storage_driver,
            max_pending_bytes=max_pending_bytes,
            unit_registry=unit_registry,
            wait_open=self._waits_for_open,
        )
        self._core = core
        self._root: NodeT = self._node_class("", core, store=self)
        self._finalizer = weakref.finalize(self, finalize, core)

    def _root_node(self) -> NodeT:
        return self._root

    # -- navigation --------------------------------------------------------------------
    def __getattr__(self, name: str) -> NodeT:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._root_node()._child(name)

    def __getitem__(self, path: str) -> NodeT:
        return self._root_node()[path]

    def __contains__(self, path: object) -> bool:
        return path in self._root_node()

    def __iter__(self) -> Iterator[str]:
        return iter(self._root_node())

    def __dir__(self) -> list[str]:
        return sorted({*object.__dir__(self), *self._core.catalog.children("")})

    def __repr__(self) -> str:
        engine = self._core.engine
        state = "forked" if engine.forked else "closed" if engine.closed else "open"
        return f"<{type(self).__name__} {self.file_name!r} ({state})>"

    # -- properties ---------------------------------------------------------------------
    @property
    def file_name(self) -> str:
        return self._core.driver.file_name

    @property
    def storage_driver(self) -> StorageIODriver | DriverFacade:
        """What the store was opened on: a backend, or a facade such as NetCDFIODriver."""
        return self._core.storage_driver

    @property
    def closed(self) -> bool:
        return self._core.engine.closed

    def stats(self) -> EngineStats:
        """Counters of the engine: operations enqueued and applied, pending, written..."""
        return self._core.engine.stats()


@contextlib.contextmanager
def close_failure_noted(exc: BaseException | None) -> Iterator[None]:
    """Around the close that ends a ``with`` block: a failure of the close raises, unless the
    block raised ``exc``; then ``exc`` propagates with the failure attached as a note."""
    try:
        yield
    except Exception as close_error:
        if exc is None:
            raise
        exc.add_note(f"writebehind: closing the store also failed: {close_error!r}")


class StorageInterface(StoreBase[StorageInterfaceDirVar]):
    """A write-behind store over a storage driver, used from ordinary (blocking) code.

    ``store.traj.positions.append(x)`` checks and copies ``x`` on the calling thread and
    returns; a background thread writes it. ``read`` waits for the writes it must see.

    Parameters
    ----------
    storage_driver : StorageIODriver or NetCDFIODriver
        Usually ``NetCDFIODriver("run.nc")``; any backend, such as ``MemoryBackend()``.
    max_pending_bytes : int
        Bound on the payload waiting to be written; ``write``/``append`` block (backpressure)
        while it is exceeded. Default 256 MiB.
    unit_registry : pint.UnitRegistry, optional
        Registry that quantities read back are made in; default pint's application registry.

    Raises
    ------
    FileNotFoundError
        The driver's mode is ``'a'`` or ``'r'`` and the file does not exist.
    OSError
        The file exists but is not a NetCDF-4 file.

    A store that is never closed is flushed and closed when it is garbage-collected and at
    interpreter exit. In a process forked from the one that opened it, every call raises
    ``ForkedStoreError`` (the parent keeps the store; the child exits without touching it).
    """

    _node_class = StorageInterfaceDirVar

    # -- metadata ------------------------------------------------------------------------
    def add_metadata(self, name: str, value: Any) -> None:
        """Set the attribute ``name`` of the file's root group."""
        self._core.add_metadata("", name, value)

    def read_metadata(self) -> dict[str, Any]:
        """The user's metadata of the root group."""
        return self._root.read_metadata()

    # -- lifecycle -----------------------------------------------------------------------
    def flush(self, durable: bool = False) -> None:
        """Block until everything enqueued before is written and the file synced.

        With ``durable=True`` the file is also fsynced, so it survives an OS crash.

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer.
        StoreClosedError
            The store is closed.
        """
        self._core.engine.flush(durable)

    def close(self) -> None:
        """Write everything pending, close the file; closing again does nothing.

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer (the file is closed all the same).
        """
        self._finalizer.detach()
        self._core.close()

    def __enter__(self) -> StorageInterface:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        with close_failure_noted(exc):
            self.close()


def open(
    file_name: Target, mode: str | None = None, **options: Unpack[OpenOptions]
) -> StorageInterface:
    """A store on ``file_name``: a NetCDF file, a Zarr store (``run.zarr``, ``s3://...``) or a
    backend; ``StorageInterface(backend_for(file_name, mode, ...), **options)``.

    The keyword options (``OpenOptions``): ``checksums`` is for NetCDF files,
    ``storage_options`` for object storage, ``group`` for one group of a shared Zarr
    hierarchy (``open("s3://b/ens.zarr", group="replica-0")``; see ``ZarrBackend``);
    ``max_pending_bytes`` and ``unit_registry`` are the store's. Raises as ``backend_for``
    and ``StorageInterface`` do (an unknown option: ``TypeError``).
    """
    backend, store = split_options(options)
    return StorageInterface(backend_for(file_name, mode, **backend), **store)
