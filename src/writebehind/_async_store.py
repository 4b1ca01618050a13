"""AsyncStorageInterface: the async face of a store, for asyncio and trio (through anyio).

It is the sync face with coroutines where the sync one would block, over the same
:class:`~writebehind._core.StoreCore` and engine:

- ``await node.append(x)`` checks and copies ``x`` on the calling task (the same code as the
  sync ``append``, no thread hop) and returns without suspending, unless the pending payload
  is over ``max_pending_bytes``; then it waits for room on a worker thread
  (``Engine.wait_for_room``), so the event loop keeps running, and tries again.
- Reads, flushes and the open and close wait for a ``concurrent.futures.Future`` that the
  writer thread completes. The task sleeps on an ``anyio.Event``; the future's done-callback
  sets it through the loop's own thread-safe scheduling call (``call_soon_threadsafe`` on
  asyncio, ``TrioToken.run_sync_soon`` on trio), which never blocks the writer. No thread and
  no loop is created per wait.

Cancellation never leaves half an operation: an operation is either enqueued whole (and then
written even if its task is cancelled later) or not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any, Unpack

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._core import snapshot
from ._engine import Engine, Handle, Staging
from ._node import NodeBase
from ._store import OpenOptions, StoreBase, close_failure_noted
from ._targets import Target, backend_for, split_options
from .codecs import make_encoder, spec_for

__all__ = ["AsyncHandle", "AsyncStorageInterface", "AsyncStorageInterfaceDirVar", "open_async"]


# -- waiting on the writer without blocking the loop --------------------------------------
def _call_soon_threadsafe() -> Callable[[Callable[[], object]], object]:
    """The current loop's call that any thread may use to schedule a callback on it."""
    native: Any = anyio.lowlevel.current_token().native_token
    # An asyncio loop, or a trio.lowlevel.TrioToken (asyncio is not imported for the test:
    # importing it costs sync-only programs tens of milliseconds).
    call_soon = getattr(native, "call_soon_threadsafe", None)
    return call_soon if call_soon is not None else native.run_sync_soon


async def _until_done(future: Future[Any]) -> None:
    """Sleep until ``future`` is done; cancelling the sleep leaves the future alone."""
    if future.done():
        return
    event = anyio.Event()
    call_soon = _call_soon_threadsafe()

    def wake(_: Future[Any]) -> None:  # runs on the writer thread
        # RuntimeError: the loop is gone (trio's RunFinishedError is one too).
        with contextlib.suppress(RuntimeError):
            call_soon(event.set)

    future.add_done_callback(wake)
    await event.wait()


async def _result(engine: Engine, future: Future[Any]) -> Any:
    """The result of an engine future (raising what ``Engine.result`` raises), awaited."""
    engine.check_not_forked()  # no writer would ever complete it
    await _until_done(future)
    return engine.result(future)


async def _wait_for_room(engine: Engine, nbytes: int) -> None:
    """Wait, off the loop, until an operation of ``nbytes`` would be accepted.

    A cancelled wait abandons its worker thread, which returns as soon as there is room or the
    store closes or fails; it holds nothing the store needs.
    """
    await anyio.to_thread.run_sync(engine.wait_for_room, nbytes, abandon_on_cancel=True)


async def _enqueue(engine: Engine, op: Any, nbytes: int) -> int:
    """Enqueue ``op``, waiting (cancellably) under backpressure; its sequence number."""
    seq = engine.try_enqueue(op)
    while seq is None:
        await _wait_for_room(engine, nbytes)
        seq = engine.try_enqueue(op)
    return seq


def _raise_if_failed(engine: Engine) -> None:
    if engine.failed:
        engine.check_usable()  # raises the BackgroundWriteError of the failure


# -- completion stages -----------------------------------------------------------------
class AsyncHandle:
    """The receipt of one async ``write`` or ``append``: await it reaching the disk.

    ``await handle.committed()`` returns once the operation is written and the file synced
    (it survives the process being killed); ``await handle.durable()`` once the file is also
    fsynced (it survives an OS crash). Both suspend only the awaiting task; cancelling them
    leaves the operation and the store as they were. Ignoring the handle costs nothing.

    ``handle.sync_handle`` is the engine's :class:`~writebehind.Handle`, whose blocking
    methods are for threads other than the event loop's.

    Raises
    ------
    BackgroundWriteError
        The store failed before the operation was synced.
    StoreClosedError
        The store was closed before the operation reached that stage (``close`` syncs but
        does not fsync, so ``durable()`` of an operation not fsynced before it raises).
    """

    __slots__ = ("_engine", "sync_handle")

    def __init__(self, handle: Handle, engine: Engine):
        self.sync_handle = handle
        self._engine = engine

    @property
    def seq(self) -> int:
        """The operation's position in the store's queue (1 for the first)."""
        return self.sync_handle.seq

    def is_committed(self) -> bool:
        return self.sync_handle.is_committed()

    def is_durable(self) -> bool:
        return self.sync_handle.is_durable()

    async def committed(self) -> None:
        """Return once the operation is written and the file synced."""
        future = self._engine.synced_future(self.seq, durable=False)
        if future is not None:
            await _result(self._engine, future)

    async def durable(self) -> None:
        """Return once the operation is written, synced and fsynced."""
        future = self._engine.synced_future(self.seq, durable=True)
        if future is not None:
            await _result(self._engine, future)

    def __repr__(self) -> str:
        return f"<writebehind.AsyncHandle seq={self.seq} committed={self.is_committed()}>"


# -- nodes -----------------------------------------------------------------------------
class AsyncStorageInterfaceDirVar(NodeBase):
    """A group or variable of an :class:`~writebehind.AsyncStorageInterface`.

    Navigation is the sync node's (``node.child``, ``node["a/b"]``, ``in``, iteration,
    ``len``); ``write``, ``append``, ``read``, ``add_metadata`` and ``read_metadata`` are
    coroutines. Not meant to be created directly: reach it as ``store.traj.positions``.
    """

    __slots__ = ()

    async def write(self, data: Any, at_index: int | None = None) -> AsyncHandle:
        """The sync node's :meth:`~writebehind.StorageInterfaceDirVar.write`, awaited.

        Returns once ``data`` is checked, copied and enqueued; suspends only under
        backpressure. If cancelled while suspended, nothing is written. Raises what the
        sync ``write`` raises.
        """
        core = self._core
        engine = core.engine
        if at_index is None:
            await self._room_before_binding(data, appendable=False)
        prepared = core.write_op(self._path, data, at_index, wait=False)
        if prepared.op is not None:
            seq = await _enqueue(engine, prepared.op, prepared.nbytes)
        else:
            assert prepared.seq is not None
            seq = prepared.seq
        return AsyncHandle(Handle(engine, seq), engine)

    async def append(self, data: Any) -> AsyncHandle:
        """The sync node's :meth:`~writebehind.StorageInterfaceDirVar.append`, awaited.

        The hot path: checks and copies ``data`` on the calling task and returns without
        suspending, unless the pending payload is over ``max_pending_bytes``; then ``data`` is
        copied at once and the task waits until the writer has made room. If cancelled
        while it waits, nothing is appended. Raises what the sync ``append`` raises.
        """
        var = self._var
        if var is None:
            await self._room_before_binding(data, appendable=True)
            var = self._variable_for_append(data)
        engine = self._core.engine
        payload = var.encode(data)
        handle = engine.try_append(var, payload)
        if handle is None:
            handle = await self._append_after_backpressure(var, payload)
        return AsyncHandle(handle, engine)

    async def _room_before_binding(self, data: Any, appendable: bool) -> None:
        """Under backpressure, wait for room *before* a first value creates the variable.

        Creating the variable enqueues its creation at once; if the value's own wait for room
        came after and were cancelled, the file would keep a variable without its value (a
        fixed one reads back as whatever the memory held). Once there is room, the caller
        binds and enqueues without suspending in between, so no other task can take the room.
        """
        core = self._core
        core.check_writable(self._path)
        if core.catalog.lookup(self._path) is not None:
            return
        engine = core.engine
        spec = spec_for(data)  # TypeError/ValueError here, before anything waits
        nbytes = spec.layout.entry_nbytes  # what try_append checks, and a numeric value's size
        if not appendable and spec.layout.storage != "numeric":
            nbytes = snapshot(spec.layout, make_encoder(spec)(data))[1]
        while not engine.has_room(nbytes):
            await _wait_for_room(engine, nbytes)

    async def _append_after_backpressure(self, var: Staging, payload: Any) -> Handle:
        engine = self._core.engine
        payload, nbytes = snapshot(var.layout, payload)  # the caller may reuse its array
        while True:
            await _wait_for_room(engine, nbytes)
            handle = engine.try_append(var, payload)
            if handle is not None:
                return handle

    async def read(self, at_index: int | slice | None = None) -> Any:
        """The sync node's :meth:`~writebehind.StorageInterfaceDirVar.read`, awaited.

        Sees every operation enqueued before it (by any task). The read runs on the writer
        thread; only this task waits. Cancelling it leaves the store as it was. Raises what
        the sync ``read`` raises.
        """
        core = self._core
        future, decode = core.read_call(self._path, at_index)
        return decode(await _result(core.engine, future))

    async def add_metadata(self, name: str, value: Any) -> None:
        """The sync node's :meth:`~writebehind.StorageInterfaceDirVar.add_metadata`, awaited:
        set the attribute ``name``, buffered until the node exists in the file. Raises what
        the sync ``add_metadata`` raises.
        """
        core = self._core
        op = core.metadata_op(self._path, name, value)
        if op is not None:
            await _enqueue(core.engine, op, op.nbytes)

    async def read_metadata(self) -> dict[str, Any]:
        """The user's metadata on this node (writebehind's bookkeeping left out)."""
        core = self._core
        future, decode = core.read_metadata_call(self._path)
        return decode(await _result(core.engine, future))

    async def to_xarray(self) -> Any:
        """This group as an ``xarray.Dataset`` (or variable as a DataArray); needs xarray.

        The reads run on the writer thread like every read; a worker thread assembles the
        result, so the loop keeps running.
        """
        from ._interop import to_xarray

        return await anyio.to_thread.run_sync(
            to_xarray, self._core, self._path, abandon_on_cancel=True
        )


# -- the store -------------------------------------------------------------------------
class AsyncStorageInterface(StoreBase[AsyncStorageInterfaceDirVar]):
    """A write-behind store used from async code (asyncio or trio), through anyio.

    ::

        async with AsyncStorageInterface(NetCDFIODriver("run.nc")) as store:
            handle = await store.traj.positions.append(x)   # copied and enqueued
            frames = await store.traj.positions.read()      # sees every earlier write
            await store.flush(durable=True)                 # a checkpoint

    Creating it starts opening the file on the writer thread and returns at once;
    ``async with store`` (or ``store = await store``) waits for the open without blocking the
    loop. Navigating an un-entered store raises ``RuntimeError``. Everything else is the sync
    :class:`~writebehind.StorageInterface` with coroutines where that one blocks, and
    ``aclose`` for ``close`` (``await store.close()`` is accepted too).

    Parameters
    ----------
    storage_driver : StorageIODriver or NetCDFIODriver
        Usually ``NetCDFIODriver("run.nc")``; any backend, such as ``MemoryBackend()``.
    max_pending_bytes : int
        Bound on the payload waiting to be written; ``write``/``append`` suspend their task
        (backpressure) while it is exceeded. Default 256 MiB.
    unit_registry : pint.UnitRegistry, optional
        Registry that quantities read back are made in; default pint's application registry.

    Raises
    ------
    TypeError
        ``storage_driver`` is not a StorageIODriver.
    ValueError
        The driver is already used by an open store.

    Entering it raises ``FileNotFoundError`` (mode ``'a'`` or ``'r'`` and no file) or
    ``OSError`` (not a NetCDF-4 file). A store that is never closed is flushed and closed when
    it is garbage-collected and at interpreter exit. In a process forked from the one that
    opened it, every call raises ``ForkedStoreError`` (the parent keeps the store).
    """

    _node_class = AsyncStorageInterfaceDirVar
    _waits_for_open = False  # entering the store waits for the open, on the loop
    #: The close an ``aclose`` cancelled while it waited left running.
    _close_future: Future[Any] | None = None

    def _root_node(self) -> AsyncStorageInterfaceDirVar:
        if self._core.opening is not None:
            raise RuntimeError(
                f"the AsyncStorageInterface of {self.file_name!r} is not open yet: use it "
                "in 'async with store:' (or 'store = await store') first"
            )
        return self._root

    async def _open(self) -> AsyncStorageInterface:
        core = self._core
        core.engine.check_not_forked()  # before waiting for the open (no writer here)
        if core.opening is not None:
            await _until_done(core.opening)
            core.finish_open()  # the future is done: this does not block
        return self

    def __await__(self) -> Generator[Any, None, AsyncStorageInterface]:
        return self._open().__await__()

    # -- metadata ------------------------------------------------------------------------
    async def add_metadata(self, name: str, value: Any) -> None:
        """Set the attribute ``name`` of the file's root group."""
        await self._root_node().add_metadata(name, value)

    async def read_metadata(self) -> dict[str, Any]:
        """The user's metadata of the root group."""
        return await self._root_node().read_metadata()

    # -- lifecycle -----------------------------------------------------------------------
    async def flush(self, durable: bool = False) -> None:
        """The sync store's :meth:`~writebehind.StorageInterface.flush`, awaited.

        Only the calling task waits; cancelling it leaves the flush to finish in the
        background. Raises what the sync ``flush`` raises.
        """
        engine = self._core.engine
        await _result(engine, engine.flush_future(durable))

    async def aclose(self) -> None:
        """Write everything pending, close the file; closing again only waits for the close.

        If the calling task is cancelled while it waits, the close still completes in the
        background and the store is closed; ``await store.aclose()`` again waits for it.

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer (the file is closed all the same).
        """
        core = self._core
        engine = core.engine
        engine.check_not_forked()  # before waiting for anything (no writer here)
        if core.opening is not None:
            await _until_done(core.opening)
            try:
                core.finish_open()
            except Exception:
                return  # the open failed and closed the engine: nothing was ever written
        self._finalizer.detach()
        try:
            core.materialize_pending_metadata()
        except BaseException:
            engine.close_quietly()  # the store closes even if that fails (and raises it)
            raise
        future = engine.close_future()
        if future is None:
            # Closed already; unless an aclose was cancelled before it saw the close end.
            future = self._close_future
            if future is None:
                return
        self._close_future = future
        await _until_done(future)
        self._close_future = None
        future.result()
        _raise_if_failed(engine)

    async def close(self) -> None:
        """``aclose()`` under the sync store's name: ``await store.close()`` is the same call.

        Without it, ``store.close`` would be a node named ``close`` (attribute access makes
        one), and ``await store.close()`` would fail with a confusing ``TypeError``. A node
        named ``close`` is reached as ``store["close"]``, as on the sync store.

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer (the file is closed all the same).
        """
        await self.aclose()

    async def __aenter__(self) -> AsyncStorageInterface:
        return await self._open()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        with close_failure_noted(exc):
            await self.aclose()


def open_async(
    file_name: Target, mode: str | None = None, **options: Unpack[OpenOptions]
) -> AsyncStorageInterface:
    """``AsyncStorageInterface(backend_for(file_name, mode, ...), **options)``: as ``open``.

    Not a coroutine: use ``async with open_async("run.nc") as store:`` (or
    ``store = await open_async("run.nc")`` and ``await store.aclose()``).
    """
    backend, store = split_options(options)
    return AsyncStorageInterface(backend_for(file_name, mode, **backend), **store)
