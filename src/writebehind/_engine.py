"""The write-behind engine: one queue, one writer thread, sticky errors.

Callers (any thread) enqueue operations; the writer thread is the only one that calls the
driver, and it holds the driver's ``library_lock`` while it does: netCDF-C is not
thread-safe, and each store has its own writer thread, so the NetCDF driver's lock is one
process-wide ``LIBRARY_LOCK``. All shared state of the engine is guarded by one lock
(``Engine.lock``, the condition's lock).

Appends are staged: each appendable variable has an *open chunk*, a preallocated buffer that
sits in the queue at the position of its first entry. A numeric variable's first buffer holds
one chunk of the backend (``driver.chunk_entries``: 48 KiB of whole entries plus two in a
netCDF file); once the variable holds that many entries, each new buffer holds several whole
chunks, up to about 8 MiB (``STAGE_TARGET_BYTES``, see ``Staging``). An append copies its
entry straight into that buffer (the copy is the snapshot) and returns; the writer later
hands the whole buffer to the driver in one call, which releases the GIL while the C library
writes. A chunk is sealed (no more entries) when it is full, when the writer takes it, or when
another operation on the same variable is enqueued, so each variable's operations apply in
the order they were made.

The writer takes a young open chunk only when something is waiting for it (a read, flush or
close behind it, or backpressure) or once it is ``LINGER_SECONDS`` old; that is what batches
appends into few large writes.

A failed operation makes the engine *failed*: it stops applying data operations (they are
counted as unwritten), and every later call raises :class:`BackgroundWriteError` with the
original exception as its cause.

A process made by ``fork()`` has a copy of every engine but none of their writer threads:
there, every call on an engine raises :class:`ForkedStoreError` (see ``_fork``).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import mmap
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple

import numpy as np

from . import _fork
from ._bookkeeping import TYPES_ATTR
from ._errors import BackgroundWriteError, ForkedStoreError, StoreClosedError
from .codecs.base import Layout
from .drivers.base import StorageIODriver

__all__ = ["Engine", "EngineStats", "FrameLayout", "Handle", "Lifecycle", "Staging"]

logger = logging.getLogger("writebehind")

#: ``active`` is set on writebehind's writer threads (see :func:`on_writer_thread`).
_WRITER_THREAD = threading.local()


def on_writer_thread() -> bool:
    """Whether the calling thread is a store's writer thread.

    A writer holds netCDF's process-wide library lock while it applies an operation, and
    the garbage collector may run a finalizer on it then: such code must not wait for
    another store's writer, which needs that lock.
    """
    return getattr(_WRITER_THREAD, "active", False)


LINGER_SECONDS = 0.05
# An append buffer holds whole chunks of the backend (``driver.chunk_entries``) and about
# 8 MiB, at most STAGE_MAX_ENTRIES entries: the append that opens a buffer (mapping it) and
# the one that meets the writer's wake-up wait longer than the others, so a buffer should
# hold a few hundred entries for those to stay under 1% of appends (344 of 24 KB). An entry
# over half a MiB has a buffer to itself and is copied outside the lock.
ALONE_ENTRY_BYTES = 512 << 10
STAGE_TARGET_BYTES = 8 << 20
STAGE_MAX_ENTRIES = 8192
FREE_BUFFERS_PER_VARIABLE = 2
# Staging memory a variable keeps for reuse once written: touching fresh pages costs more
# than the copy itself (2 us per 4 KiB page on a VM), so written buffers are recycled.
RECYCLE_BYTES_PER_VARIABLE = 16 << 20
# ...and all variables of a store together (memory held beyond the pending entries, which
# max_pending_bytes bounds): a store with many variables keeps at most this much.
RECYCLE_BYTES_PER_STORE = 32 << 20
OBJECT_ENTRY_OVERHEAD = 64


class Lifecycle(enum.Enum):
    """Where an engine is in its life; a failure is apart (``Engine.failed``, sticky).

    A failed engine stays OPEN until it is closed: its queue still holds the close, and
    every other call raises the failure. A forked child's copy is CLOSING for good: nothing
    there will ever apply its close.
    """

    OPEN = "open"  # takes operations (opening the file is the first one)
    CLOSING = "closing"  # the close is enqueued: no new operation is taken
    CLOSED = "closed"  # the writer applied the close (or stopped): the file is closed


class EngineStats(NamedTuple):
    """A snapshot of the engine's counters (see ``StorageInterface.stats``)."""

    operations_enqueued: int
    operations_applied: int
    pending_operations: int
    pending_bytes: int
    batches_written: int
    bytes_written: int
    write_rate_bytes_per_second: float
    backpressure_waits: int
    longest_backpressure_wait_seconds: float
    failed: bool


class Staging:
    """The append side of one appendable variable: its length and its staging buffers.

    The engine's, guarded by ``Engine.lock``; the catalog's entry of the variable
    (``_catalog.VariableEntry``) points to it. It repeats the few facts of the entry the
    append path needs (path, layout, encoder), which never change, so that an append
    reads this object alone.
    """

    __slots__ = (
        "capacity",
        "encode",
        "entry_nbytes",
        "filled",
        "first_capacity",
        "free_buffers",
        "layout",
        "length",
        "max_free_buffers",
        "numeric",
        "open_chunk",
        "path",
    )

    def __init__(
        self,
        path: str,
        layout: Layout,
        encode: Callable[[Any], Any],
        chunk_entries: int,
        length: int = 0,
    ):
        self.path = path
        self.layout = layout
        self.encode = encode
        self.length = length  # entries, pending ones included
        self.numeric = layout.storage == "numeric"
        self.entry_nbytes = layout.entry_nbytes
        if self.numeric:
            entry_nbytes = max(1, self.entry_nbytes)
            chunk = chunk_entries  # the backend's: each buffer is written as whole chunks
            if entry_nbytes > ALONE_ENTRY_BYTES:
                self.capacity = 1
            else:
                chunks = STAGE_TARGET_BYTES // (chunk * entry_nbytes)
                self.capacity = chunk * max(1, min(STAGE_MAX_ENTRIES // chunk, chunks))
            # A variable's first buffer holds one file chunk: most variables never fill it.
            self.first_capacity = min(self.capacity, max(1, chunk))
        else:
            self.capacity = self.first_capacity = chunk_entries
        buffer_nbytes = max(1, self.capacity * self.entry_nbytes)
        self.max_free_buffers = max(
            FREE_BUFFERS_PER_VARIABLE, RECYCLE_BYTES_PER_VARIABLE // buffer_nbytes
        )
        self.open_chunk: _AppendChunk | None = None
        self.free_buffers: list[np.ndarray[Any, Any]] = []
        self.filled = False  # its last buffer filled up before the writer took it


class FrameLayout:
    """The variables of a frame for ``Engine.append_frame``, checked once (see
    ``Engine.frame_layout``)."""

    __slots__ = ("nbytes", "scalar_types", "scales", "variables")

    def __init__(self, variables: Sequence[Staging], scales: Sequence[float | None] | None):
        self.variables = tuple(variables)
        if len(set(self.variables)) != len(self.variables):
            raise ValueError("a frame holds one entry of each variable: a variable is given twice")
        for var in self.variables:
            if not var.numeric:
                raise ValueError(
                    f"{var.path!r} does not hold numbers: append its entries one by one"
                )
        self.scales: tuple[float | None, ...] = (
            (None,) * len(self.variables) if scales is None else tuple(scales)
        )
        if len(self.scales) != len(self.variables):
            raise ValueError(f"{len(self.scales)} scales for {len(self.variables)} variables")
        self.nbytes = sum(var.entry_nbytes for var in self.variables)
        #: The Python number types copied by item assignment into each variable (a scalar
        #: variable of their kind: no cast to check); others go through numpy's casting.
        self.scalar_types = tuple(map(_assignable, self.variables, self.scales))


def _assignable(var: Staging, scale: float | None) -> tuple[type, ...]:
    """The Python numbers an item assignment stores in a scalar entry of ``var`` as
    ``append_frame``'s casting would: a float into float64, or scaled into float32 (which
    rounds, as numpy's ``same_kind`` cast does), an int into int64 (unscaled)."""
    if var.layout.shape != ():
        return ()
    dtype = var.layout.dtype
    if dtype.kind == "f" and (scale is not None or dtype.itemsize == 8):
        return (float,)
    if dtype == np.int64 and scale is None:
        return (int,)
    return ()


def _new_entry_buffer(var: Staging) -> Any:
    """A buffer of one entry of ``var``, for an entry over ALONE_ENTRY_BYTES."""
    return np.empty((1, *var.layout.shape), dtype=var.layout.dtype)


class Handle:
    """The receipt of one ``write`` or ``append``: wait for it to be on disk.

    ``committed()`` returns once the operation is written and the file synced (it survives
    the process being killed); ``durable()`` once it is also fsynced (it survives an OS
    crash). Both raise :class:`BackgroundWriteError` if the store failed first.
    """

    __slots__ = ("_engine", "seq")

    def __init__(self, engine: Engine, seq: int):
        self._engine = engine
        self.seq = seq

    def committed(self) -> None:
        self._engine.wait_synced(self.seq, durable=False)

    def durable(self) -> None:
        self._engine.wait_synced(self.seq, durable=True)

    def is_committed(self) -> bool:
        return self._engine.synced_seq >= self.seq

    def is_durable(self) -> bool:
        return self._engine.durable_seq >= self.seq

    def __repr__(self) -> str:
        return f"<writebehind.Handle seq={self.seq} committed={self.is_committed()}>"


# -- operations -------------------------------------------------------------------------
class _Op:
    __slots__ = ("nbytes", "path", "queued_at", "seq")
    barrier = False
    name = "operation"
    #: Changes the file's structure (groups, variables, attributes): applied ahead of the
    #: data operations of its batch (see _structure_first).
    structural = False
    #: Operations it counts as (pending, applied): 0 for the second half of one.
    counted = 1

    def __init__(self, path: str, nbytes: int = 0):
        self.path = path
        self.nbytes = nbytes
        self.seq = 0
        self.queued_at = time.monotonic() if self.structural else 0.0

    def apply(self, engine: Engine) -> None:
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        """The operation will not be applied (the engine failed before it)."""


class _CreateVariable(_Op):
    """Create a variable; a fixed one gets its first value in the same operation, so the
    file never holds a fixed variable without a value."""

    __slots__ = ("appendable", "attrs", "layout", "value")
    name = "create variable"
    structural = True

    def __init__(
        self,
        path: str,
        layout: Layout,
        appendable: bool,
        attrs: dict[str, Any],
        value: Any = None,
        nbytes: int = 0,
    ):
        super().__init__(path, nbytes)
        self.layout = layout
        self.appendable = appendable
        self.attrs = attrs
        self.value = value

    def apply(self, engine: Engine) -> None:
        engine.driver.create_variable(self.path, self.layout, self.appendable)
        engine.driver.set_attrs(self.path, self.attrs)
        if self.value is not None:
            engine.driver.write_value(self.path, self.value)
            self.value = None
        if self.appendable:
            engine.lengths_on_disk[self.path] = 0
            engine.dirty_lengths.add(self.path)

    def split_value(self) -> _FirstValue | None:
        """Leave the first value of a fixed variable to a second operation, applied after
        the structural operations of its batch (see _structure_first)."""
        if self.value is None:
            return None
        value, self.value = self.value, None
        return _FirstValue(self.path, value)


class _FirstValue(_Op):
    """The first value of a fixed variable whose creation was applied ahead of it."""

    __slots__ = ("value",)
    name = "create variable"
    counted = 0  # the creation counts for both (and holds its bytes)

    def __init__(self, path: str, value: Any):
        super().__init__(path)
        self.value = value

    def apply(self, engine: Engine) -> None:
        value, self.value = self.value, None
        engine.driver.write_value(self.path, value)


class _SetAttrs(_Op):
    __slots__ = ("attrs",)
    name = "add metadata"
    structural = True

    def __init__(self, path: str, attrs: dict[str, Any]):
        super().__init__(path)
        self.attrs = attrs

    def apply(self, engine: Engine) -> None:
        engine.driver.set_attrs(self.path, self.attrs)


class _CreateGroup(_SetAttrs):
    """Create a group, with its attributes."""

    __slots__ = ()
    name = "create group"

    def apply(self, engine: Engine) -> None:
        engine.driver.create_group(self.path)
        if self.attrs:
            super().apply(engine)


class _SetMetadata(_Op):
    """Set one user attribute and keep the JSON record of metadata types in step."""

    __slots__ = ("name_", "stored", "tag")
    name = "add metadata"
    structural = True

    def __init__(self, path: str, name: str, stored: Any, tag: str | None):
        super().__init__(path)
        self.name_ = name
        self.stored = stored
        self.tag = tag

    def apply(self, engine: Engine) -> None:
        driver = engine.driver
        attrs: dict[str, Any] = {self.name_: self.stored}
        current = driver.get_attrs(self.path).get(TYPES_ATTR)
        if self.tag is not None or current is not None:
            try:
                types = json.loads(current) if current is not None else {}
            except ValueError:
                types = {}
            if self.tag is None:
                types.pop(self.name_, None)
            else:
                types[self.name_] = self.tag
            attrs[TYPES_ATTR] = json.dumps(types)
        driver.set_attrs(self.path, attrs)


class _AppendChunk(_Op):
    __slots__ = ("buffer", "capacity", "count", "opened_at", "reusable", "sealed", "start", "var")
    name = "append"

    def __init__(self, var: Staging, start: int, buffer: Any):
        super().__init__(var.path)
        self.var = var
        self.start = start
        self.buffer = buffer
        self.capacity = len(buffer) if var.numeric else var.capacity
        self.count = 0
        self.sealed = False
        self.opened_at = time.monotonic()
        self.reusable: Any = None  # the written buffer, for Engine._apply to recycle

    def apply(self, engine: Engine) -> None:
        var = self.var
        entries = self.buffer[: self.count] if var.numeric else self.buffer
        engine.driver.write_entries(self.path, self.start, entries)
        end = self.start + self.count
        if end > engine.lengths_on_disk.get(self.path, 0):
            engine.lengths_on_disk[self.path] = end
            engine.dirty_lengths.add(self.path)
        if var.numeric and len(self.buffer) in (var.capacity, var.first_capacity):
            self.reusable = self.buffer  # not offered here: the library lock is held
        self.buffer = None


class _WriteValue(_Op):
    __slots__ = ("payload",)
    name = "write"

    def __init__(self, path: str, payload: Any, nbytes: int):
        super().__init__(path, nbytes)
        self.payload = payload

    def apply(self, engine: Engine) -> None:
        engine.driver.write_value(self.path, self.payload)


class _WriteEntry(_Op):
    __slots__ = ("index", "payload")
    name = "write at index"

    def __init__(self, path: str, index: int, payload: Any, nbytes: int):
        super().__init__(path, nbytes)
        self.index = index
        self.payload = payload

    def apply(self, engine: Engine) -> None:
        payload = self.payload
        entries = payload[np.newaxis] if isinstance(payload, np.ndarray) else [payload]
        engine.driver.write_entries(self.path, self.index, entries)


class _Call(_Op):
    """Run a function on the writer thread and hand its result to a future."""

    __slots__ = ("fatal", "fn", "future", "name", "result", "run_after_failure")
    barrier = True

    def __init__(
        self,
        name: str,
        fn: Callable[[], Any],
        path: str = "",
        *,
        fatal: bool = False,
        run_after_failure: bool = False,
    ):
        super().__init__(path)
        self.fn = fn
        self.future: Future[Any] = Future()
        self.fatal = fatal  # a failure stops the store (sync, close) or only this call
        self.run_after_failure = run_after_failure
        self.name = name

    def apply(self, engine: Engine) -> None:
        self.result = self.fn()

    def finish(self, error: BaseException | None) -> None:
        """Complete the future, after the engine counted the operation as applied."""
        if error is None:
            self.future.set_result(self.result)
        else:
            self.future.set_exception(error)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def _lingers_since(op: _Op) -> float | None:
    """When the writer's wait for more operations like ``op`` began (None: take it now).

    An open chunk lingers so that appends group into few large writes; a structural change
    lingers so that the creations of a loop making many variables group into few batches
    (see _structure_first).
    """
    if isinstance(op, _AppendChunk):
        return None if op.sealed else op.opened_at
    return op.queued_at if op.structural else None


def _structure_first(batch: list[_Op]) -> list[_Op]:
    """The batch's operations with, between two calls (flushes, reads...), the structural
    ones first, then the first values of the fixed variables they create, then the data.

    netCDF-4 leaves define mode (``nc_enddef``) at the first data write after a structural
    change, and that syncs the whole file: ``H5Fflush`` visits every open dataset and every
    cached metadata object. Applied in order, creating N variables with an entry each
    (create, write, create, write...) synced N times, a cost growing as N squared (5 s for
    1,000 variables). Each variable's operations keep their order (a variable is created
    before its data; structural operations keep theirs), and no sync falls between a
    fixed variable's creation and its first value: calls end a run.
    """
    if not any(op.structural for op in batch):
        return batch
    ordered: list[_Op] = []
    structure: list[_Op] = []
    values: list[_Op] = []
    data: list[_Op] = []
    for op in batch:
        if isinstance(op, _Call):
            ordered += structure + values + data
            ordered.append(op)
            structure, values, data = [], [], []
        elif op.structural:
            structure.append(op)
            value = op.split_value() if isinstance(op, _CreateVariable) else None
            if value is not None:
                values.append(value)
        else:
            data.append(op)
    return ordered + structure + values + data


#: Calls that do not change the file: a flush after them has nothing to sync.
_READ_ONLY_CALLS = frozenset({"read", "read metadata"})


# -- the engine -------------------------------------------------------------------------
class Engine:
    """The queue, the writer thread and the staging buffers of one open file.

    Its lock also guards the store's catalog (``_catalog.Catalog``), which it does not own.
    """

    def __init__(self, driver: StorageIODriver, max_pending_bytes: int):
        if max_pending_bytes <= 0:
            raise ValueError("max_pending_bytes must be positive")
        self.driver = driver
        self.driver_lock = driver.library_lock or contextlib.nullcontext()
        self.max_pending_bytes = int(max_pending_bytes)
        # The hot path takes the mutex itself: ``with cond`` adds two Python-level calls.
        self._mutex = threading.Lock()
        self.cond = threading.Condition(self._mutex)
        self.lock = self.cond  # ``with engine.lock:`` guards the queue and the catalog
        self._staging: dict[str, Staging] = {}  # of the appendable variables, by path
        # queue state (guarded by the lock)
        self._ops: deque[_Op] = deque()
        self._barriers = 0
        self._seq = 0
        self._pending_ops = 0
        self._pending_bytes = 0
        self._free_bytes = 0  # in the variables' free_buffers
        self._state = Lifecycle.OPEN
        self._error: BaseException | None = None  # the failure (sticky), with its exception
        # Failed, closing or closed: the one check of the append path, which then goes to
        # check_usable to raise the reason. Set with _state and _error, lock held.
        self._unusable = False
        self.owner_pid = os.getpid()  # the process whose writer thread owns the file
        self.forked = False  # this process is a fork of that one (see _forked_in_child)
        self._failed_op = ""
        self._failed_path = ""
        self._unwritten = 0
        # counters
        self._applied = 0
        self._batches = 0
        self._bytes_written = 0
        self._started = time.monotonic()
        self._backpressure_waits = 0
        self._longest_wait = 0.0
        self._warned_backpressure = False
        self._last_flush: tuple[int, bool, Future[Any]] | None = None  # (covers, durable, ...)
        self.synced_seq = 0
        self.durable_seq = 0
        # writer-side state (touched only by the writer thread)
        self.lengths_on_disk: dict[str, int] = {}
        self.dirty_lengths: set[str] = set()
        # Whether anything was applied since the last sync (fsync): a flush with nothing
        # queued and nothing unsynced returns at once instead of a trip to the writer.
        # Set by the writer before it applies an operation, read under the lock.
        self._unsynced = True
        self._unfsynced = True
        self._thread = threading.Thread(
            target=self._run, name=f"writebehind-writer({driver.file_name})", daemon=True
        )
        _fork.register(self)
        self._thread.start()

    # -- state checks --------------------------------------------------------------
    @property
    def state(self) -> Lifecycle:
        return self._state

    @property
    def closed(self) -> bool:
        """Closing or closed: no new operation is taken."""
        return self._state is not Lifecycle.OPEN

    def _set_state(self, state: Lifecycle) -> None:
        """Move on in the lifecycle (never back). Lock held (or in the fork hook)."""
        self._state = state
        self._unusable = True

    @property
    def failed(self) -> bool:
        return self._error is not None

    def check_usable(self) -> None:
        """Raise if the store is closed, failed or forked. Call with or without the lock."""
        # A forked engine is also closing: the append path's check sends it here.
        if self._unusable:
            self.check_not_forked()
            if self._error is not None:
                raise self._background_error()
            raise StoreClosedError(f"the store of {self.driver.file_name!r} is closed")

    def check_not_forked(self) -> None:
        """Raise ForkedStoreError in a forked child (before anything that would wait)."""
        if self.forked:
            raise ForkedStoreError(
                f"the store of {self.driver.file_name!r} was opened in process "
                f"{self.owner_pid}, and this process ({os.getpid()}) is a fork of it: the "
                "store's writer thread is not here, and the file is the parent's. Open "
                "stores after forking, each process on a file of its own (or start "
                "processes with the 'spawn' or 'forkserver' method)"
            )

    def _forked_in_child(self) -> None:
        """Make this copy of the engine, in a forked child, refuse every call at once.

        Runs in the child's fork hook (see ``_fork``), which must take no lock: a thread of
        the parent may have held one at the fork, so the engine gets new ones. A store closed
        before the fork stays closed (``StoreClosedError``, and closing it again is allowed);
        any other is forked, and also closing, which the append path already checks.
        """
        self._mutex = threading.Lock()
        self.cond = threading.Condition(self._mutex)
        self.lock = self.cond
        if self._state is not Lifecycle.CLOSED:
            self.forked = True
            self._set_state(Lifecycle.CLOSING)

    def _background_error(self) -> BackgroundWriteError:
        error = BackgroundWriteError(
            f"writing {self.driver.file_name!r} failed in the background: {self._failed_op} "
            f"of {self._failed_path or '/'!r} raised {self._error!r}; "
            f"{self._unwritten} later operation(s) were not written. Data flushed before "
            "the failure is in the file; reopen it to continue.",
            path=self._failed_path,
            operation=self._failed_op,
            unwritten=self._unwritten,
        )
        error.__cause__ = self._error
        return error

    # -- enqueueing (caller threads) ----------------------------------------------
    def _push(self, op: _Op) -> int:
        """Append ``op`` to the queue. Call with the lock held, after check_usable."""
        var = self._staging.get(op.path)
        chunk = var.open_chunk if var is not None else None
        if chunk is not None:
            self._seal(chunk)
        idle = not self._ops
        self._seq += 1
        op.seq = self._seq
        self._ops.append(op)
        self._pending_ops += 1
        self._pending_bytes += op.nbytes
        if op.barrier:
            self._barriers += 1
        # A writer with operations queued is busy, or lingers with a timeout over a young
        # chunk or structural change; another structural change does not end its linger,
        # so it is not woken for one. Each wake-up takes the GIL and this lock from the
        # caller: a loop creating variables woke it at every one (see _take_batch).
        if idle or op.barrier or chunk is not None or not op.structural:
            self.cond.notify_all()
        return self._seq

    def _seal(self, chunk: _AppendChunk) -> None:
        """Seal ``chunk`` before it is full (the writer takes it, or another operation)."""
        chunk.sealed = True
        chunk.var.filled = False
        if chunk.var.open_chunk is chunk:
            chunk.var.open_chunk = None

    def enqueue(self, op: _Op) -> int:
        with self.cond:
            self.check_usable()
            self.make_room(op.nbytes)
            return self._push(op)

    def create_group(self, path: str, attrs: dict[str, Any]) -> None:
        """Enqueue the creation of group ``path``; call with the lock held."""
        self._push(_CreateGroup(path, attrs))

    def create_variable(
        self,
        path: str,
        layout: Layout,
        appendable: bool,
        attrs: dict[str, Any],
        value: Any,
        nbytes: int,
    ) -> int:
        """Enqueue the creation of a variable (with the first ``value`` of a fixed one, of
        ``nbytes``; None and 0 for an appendable one); call with the lock held. Returns the
        operation's sequence number."""
        op = _CreateVariable(path, layout, appendable, attrs, value, nbytes)
        return self._push(op)

    def add_staging(
        self,
        path: str,
        layout: Layout,
        encode: Callable[[Any], Any],
        length: int = 0,
    ) -> Staging:
        """The staging state of the appendable variable ``path`` (with ``length`` entries
        in the file), made now. Lock held, or at the open, before the store is shared."""
        var = Staging(path, layout, encode, self.driver.chunk_entries(layout), length)
        self._staging[path] = var
        return var

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        self.enqueue(_SetAttrs(path, attrs))

    def set_attrs_locked(self, path: str, attrs: dict[str, Any]) -> None:
        """Enqueue attributes without waiting for room (bookkeeping); lock held."""
        self._push(_SetAttrs(path, attrs))

    def append(self, var: Staging, payload: Any) -> Handle:
        """Stage one entry of ``var`` (the hot path: a copy under the lock, no thread hop)."""
        if var.capacity == 1 and var.numeric:
            handle = self._append_alone(var, payload)
            assert handle is not None  # it waits for room rather than refuse
            return handle
        if var.open_chunk is None and var.numeric and not var.free_buffers:
            self._prepare_buffer(var)
        with self._mutex:  # the condition's lock: make_room and _stage may use the condition
            if self._unusable:
                self.check_usable()
            if self._pending_bytes > self.max_pending_bytes:
                self.make_room(var.entry_nbytes)
            return self._stage(var, payload)

    def _stage(self, var: Staging, payload: Any) -> Handle:
        """Copy one entry into the variable's open chunk. Lock held, store usable."""
        chunk = var.open_chunk
        if chunk is None:
            chunk = self._open_chunk(var)
        if var.numeric:
            chunk.buffer[chunk.count] = payload
            nbytes = var.entry_nbytes
        else:
            chunk.buffer.append(payload)
            nbytes = len(payload) + OBJECT_ENTRY_OVERHEAD
        chunk.count += 1
        chunk.nbytes += nbytes
        var.length += 1
        self._seq += 1
        self._pending_ops += 1
        self._pending_bytes += nbytes
        if chunk.count == chunk.capacity:
            chunk.sealed = True
            var.open_chunk = None
            var.filled = True
            self.cond.notify_all()
        return Handle(self, self._seq)

    def _append_alone(self, var: Staging, payload: Any, wait: bool = True) -> Handle | None:
        """Append a large entry (a buffer to itself), copying it outside the lock.

        Copying megabytes (into fresh pages, milliseconds) under the lock would stall the
        writer, which takes the lock between writes. The entry's room is reserved first, so
        the backpressure bound holds while it is copied; it is queued once copied. Without
        ``wait``, returns None instead of waiting for room (``try_append``).
        """
        nbytes = var.entry_nbytes
        cond = self.cond
        with cond:
            if self._unusable:
                self.check_usable()
            if not wait:
                if not self.has_room(nbytes):
                    return None
            elif self._pending_bytes > self.max_pending_bytes:
                self.make_room(nbytes)
            self._pending_bytes += nbytes
            buffer = self._reuse(var) if var.free_buffers else None
        queued = False
        try:
            if buffer is None:
                buffer = np.empty((1, *var.layout.shape), dtype=var.layout.dtype)
            buffer[0] = payload
            with cond:
                self.check_usable()
                chunk = _AppendChunk(var, var.length, buffer)
                chunk.count, chunk.nbytes, chunk.sealed = 1, nbytes, True
                self._ops.append(chunk)
                var.length += 1
                self._seq += 1
                self._pending_ops += 1
                queued = True
                cond.notify_all()
                return Handle(self, self._seq)
        finally:
            if not queued:
                with cond:
                    self._pending_bytes -= nbytes
                    cond.notify_all()

    def has_room(self, nbytes: int) -> bool:
        """Whether an operation of ``nbytes`` would be accepted now without backpressure."""
        pending = self._pending_bytes
        return pending == 0 or pending + nbytes <= self.max_pending_bytes

    def wait_for_room(self, nbytes: int, timeout: float | None = None) -> bool:
        """Block until ``has_room(nbytes)`` (or timeout); False on timeout.

        For callers that must not block inside ``append`` (the async store waits here on a
        worker thread, then calls ``try_append``). Raises if the store fails or closes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            self.check_usable()
            if self.has_room(nbytes):
                return True
            started = time.monotonic()
            self._count_backpressure_wait()  # as the sync append's waits: stats and warning
            self._barriers += 1
            self.cond.notify_all()
            try:
                while not self.has_room(nbytes):
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self.cond.wait(remaining)
                    self.check_usable()
                return True
            finally:
                self._barriers -= 1
                self._longest_wait = max(self._longest_wait, time.monotonic() - started)

    def try_append(self, var: Staging, payload: Any) -> Handle | None:
        """``append`` if it would not wait under backpressure; None (nothing staged) if so."""
        if var.capacity == 1 and var.numeric:
            return self._append_alone(var, payload, wait=False)
        if var.open_chunk is None and var.numeric and not var.free_buffers:
            self._prepare_buffer(var)
        with self._mutex:
            self.check_usable()
            if not self.has_room(var.entry_nbytes):
                return None
            return self._stage(var, payload)

    def frame_layout(
        self, variables: Sequence[Staging], scales: Sequence[float | None] | None = None
    ) -> FrameLayout:
        """The layout of the frames ``append_frame`` stages: one entry of each of
        ``variables``, checked here once.

        ``scales[i]`` not None: the entry stored for ``variables[i]`` is its payload times
        ``scales[i]``, computed straight into the staging buffer and cast to the variable's
        dtype as numpy's ``same_kind`` casting allows (float64 into float32: a unit
        conversion into a float32 file).

        Raises
        ------
        ValueError
            A variable does not hold numbers or is given twice, or ``scales`` is not one
            per variable.
        """
        return FrameLayout(variables, scales)

    def append_frame(self, frame: FrameLayout, payloads: Sequence[Any]) -> Handle:
        """Stage one entry of each of the frame's variables at once: one lock, all or none.

        For a caller that appends the same numeric variables again and again, such as a
        trajectory's frames (``writebehind.openmm``'s reporter: 5 to 8 variables a frame,
        where separate appends would take the lock and run an encoder each). The caller
        checks its first entries through the variables' encoders, which fixes their units,
        dtypes and shapes; ``payloads[i]`` is then the entry of the frame's ``i``-th
        variable as its encoder would return it, in the variable's stored units (times the
        frame's scale, if it has one: see ``frame_layout``). An unscaled entry is copied
        with numpy's ``safe`` casting.

        Every entry is copied under the lock, even one over ``ALONE_ENTRY_BYTES`` (which
        ``append`` copies outside it): the frame is staged whole or not at all.

        Raises
        ------
        ValueError
            Not one payload per variable, or an entry's shape is not its variable's.
            Nothing is staged.
        TypeError
            An entry does not cast to its variable's dtype. Nothing is staged.
        BackgroundWriteError, StoreClosedError, ForkedStoreError
            As ``append``.
        """
        variables = frame.variables
        if len(payloads) != len(variables):
            raise ValueError(
                f"a frame of {len(variables)} variables, given {len(payloads)} entries"
            )
        alone: list[Any] = []  # buffers made before the lock, for entries over ALONE_ENTRY_BYTES
        for i, var in enumerate(variables):
            payload = payloads[i]
            if type(payload) is np.ndarray:
                shape = payload.shape
            elif type(payload) in frame.scalar_types[i]:
                shape = ()
            else:
                shape = np.shape(payload)
            if shape != var.layout.shape:
                raise ValueError(
                    f"an entry of shape {shape} for {var.path!r}, whose entries are "
                    f"{var.layout.shape}"
                )
            if var.capacity == 1:
                alone.append(None if var.free_buffers else _new_entry_buffer(var))
            elif var.open_chunk is None and not var.free_buffers:
                self._prepare_buffer(var)
        with self._mutex:
            if self._unusable:
                self.check_usable()
            if self._pending_bytes > self.max_pending_bytes:
                self.make_room(frame.nbytes)
            opened: list[_AppendChunk] = []
            try:
                self._copy_frame(frame, payloads, alone, opened)
            except BaseException:
                self._unstage(opened)
                raise
            # Every entry is copied: count them (as ``_stage`` and ``_append_alone`` do).
            alone_index = 0
            for var in variables:
                entry_nbytes = var.entry_nbytes
                if var.capacity == 1:
                    chunk = _AppendChunk(var, var.length, alone[alone_index])
                    alone_index += 1
                    chunk.count, chunk.nbytes, chunk.sealed = 1, entry_nbytes, True
                    self._ops.append(chunk)
                else:
                    open_chunk = var.open_chunk
                    assert open_chunk is not None  # opened by _copy_frame
                    open_chunk.count += 1
                    open_chunk.nbytes += entry_nbytes
                    if open_chunk.count == open_chunk.capacity:
                        open_chunk.sealed = True
                        var.open_chunk = None
                        var.filled = True
                        self.cond.notify_all()
                var.length += 1
            count = len(variables)
            self._seq += count
            self._pending_ops += count
            self._pending_bytes += frame.nbytes
            if alone:
                self.cond.notify_all()  # a sealed chunk waits, as after ``_append_alone``
            return Handle(self, self._seq)

    def _copy_frame(
        self,
        frame: FrameLayout,
        payloads: Sequence[Any],
        alone: list[Any],
        opened: list[_AppendChunk],
    ) -> None:
        """Copy a frame's entries into their slots, counting none. Lock held."""
        alone_index = 0
        scales = frame.scales
        for i, var in enumerate(frame.variables):
            payload = payloads[i]
            scale = scales[i]
            if var.capacity == 1:
                if alone[alone_index] is None:
                    alone[alone_index] = (
                        self._reuse(var) if var.free_buffers else _new_entry_buffer(var)
                    )
                buffer, index = alone[alone_index], 0
                alone_index += 1
            else:
                chunk = var.open_chunk
                if chunk is None:
                    chunk = self._open_chunk(var)  # wakes an idle writer, once a frame
                    opened.append(chunk)
                buffer, index = chunk.buffer, chunk.count
            if frame.scalar_types[i] and type(payload) in frame.scalar_types[i]:
                # A Python number into its kind of variable: an item assignment.
                buffer[index] = payload if scale is None else payload * scale
            elif scale is None:
                np.copyto(buffer[index : index + 1], payload, casting="safe")
            else:
                np.multiply(payload, scale, out=buffer[index : index + 1], casting="same_kind")

    def _unstage(self, opened: list[_AppendChunk]) -> None:
        """Take back the chunks an ``append_frame`` that failed opened (empty). Lock held."""
        for chunk in opened:
            self._ops.remove(chunk)
            var = chunk.var
            var.open_chunk = None
            if len(chunk.buffer) == var.capacity:
                self._offer_for_reuse(var, chunk.buffer)

    def try_enqueue(self, op: _Op) -> int | None:
        """``enqueue`` if it would not wait under backpressure; None (nothing queued) if so."""
        with self.cond:
            self.check_usable()
            if not self.has_room(op.nbytes):
                return None
            return self._push(op)

    def _prepare_buffer(self, var: Staging) -> None:
        """Add a fresh buffer to ``var``'s free list, made before taking the lock.

        Only once ``var`` has filled its first buffer (see ``_open_chunk``). When its last
        buffer filled up, the new one is mapped at once, which can take
        milliseconds (see ``_new_buffer``), without the lock, so the writer is not kept
        waiting; when the writer took it first (appends slower than the linger), only the
        pages used fault in. (Two threads may both add a buffer: it is recycled.)
        """
        if var.length >= var.first_capacity:
            shape = (var.capacity, *var.layout.shape)
            buffer = _new_buffer(shape, var.layout, populate=var.filled)
            with self._mutex:
                var.free_buffers.append(buffer)
                self._free_bytes += buffer.nbytes

    def _open_chunk(self, var: Staging) -> _AppendChunk:
        if var.numeric:
            if var.free_buffers:
                buffer: Any = self._reuse(var)
            else:  # a first buffer, left to fault in as entries arrive
                rows = var.first_capacity if var.length < var.first_capacity else var.capacity
                buffer = _new_buffer((rows, *var.layout.shape), var.layout, populate=False)
        else:
            buffer = []
        chunk = _AppendChunk(var, var.length, buffer)
        idle = not self._ops
        self._ops.append(chunk)
        var.open_chunk = chunk
        # An idle writer waits without a timeout: wake it, so that it takes the chunk once
        # its linger is up. With operations queued it is busy, or lingers with a timeout
        # (a young chunk does not end its linger), or takes chunks at once (a caller waits
        # for room): waking it would only take the GIL and this lock from the caller.
        if idle:
            self.cond.notify_all()
        return chunk

    def _reuse(self, var: Staging) -> Any:
        """Take a buffer from ``var``'s free list. Lock held, list not empty."""
        buffer = var.free_buffers.pop()
        self._free_bytes -= buffer.nbytes
        return buffer

    def _offer_for_reuse(self, var: Staging, buffer: Any) -> None:
        """Keep a written buffer for ``var``'s next entries, if the limits allow.

        Writer, lock held, library lock not held (see ``_apply``). A first, smaller buffer
        (``first_capacity`` entries) is kept only while the variable holds fewer entries
        than that: a variable appended to more slowly than the writer takes its chunks
        (a trajectory's frames, a second or more apart) would otherwise allocate a new
        first buffer at every entry.
        """
        if len(buffer) != var.capacity and var.length >= var.first_capacity:
            return
        if (
            len(var.free_buffers) < var.max_free_buffers
            and self._free_bytes + buffer.nbytes <= RECYCLE_BYTES_PER_STORE
            and self._state is not Lifecycle.CLOSED
        ):
            var.free_buffers.append(buffer)
            self._free_bytes += buffer.nbytes

    def _drop_free_buffers(self) -> None:
        """Let go of the recycled staging buffers (at close). Lock held."""
        # A closed store can live on in reference cycles until the cyclic GC runs; its
        # recycled staging buffers (up to RECYCLE_BYTES_PER_STORE) must not.
        for var in list(self._staging.values()):
            var.free_buffers.clear()
        self._free_bytes = 0

    def _count_backpressure_wait(self) -> None:
        """Count a caller's wait for room; log a warning at the first one. Lock held."""
        self._backpressure_waits += 1
        if not self._warned_backpressure:
            self._warned_backpressure = True
            logger.warning(
                "writebehind: backpressure engaged on %r: %d bytes pending in %d operations "
                "exceed max_pending_bytes=%d; writers now wait for the disk (written so far: "
                "%d bytes at %.1f MB/s)",
                self.driver.file_name,
                self._pending_bytes,
                self._pending_ops,
                self.max_pending_bytes,
                self._bytes_written,
                self._rate() / 1e6,
            )

    def make_room(self, nbytes: int) -> None:
        """Block while the pending payload is over the limit (backpressure). Lock held."""
        if self._pending_bytes + nbytes <= self.max_pending_bytes or self._pending_bytes == 0:
            return
        started = time.monotonic()
        self._count_backpressure_wait()
        self._barriers += 1  # the writer takes open chunks at once while we wait
        self.cond.notify_all()
        try:
            while (
                self._pending_bytes > 0
                and self._pending_bytes + nbytes > self.max_pending_bytes
                and self._error is None
                and self._state is not Lifecycle.CLOSED
            ):
                self.cond.wait()
        finally:
            self._barriers -= 1
            waited = time.monotonic() - started
            self._longest_wait = max(self._longest_wait, waited)
        self.check_usable()

    def call(self, name: str, fn: Callable[[], Any], path: str = "") -> Future[Any]:
        """Run ``fn`` on the writer thread after everything enqueued before; its future."""
        op = _Call(name, fn, path)
        with self.cond:
            self.check_usable()
            self._push(op)
        return op.future

    def run(self, name: str, fn: Callable[[], Any], path: str = "") -> Any:
        """``call`` and wait for the result (re-raising the background error if any)."""
        return self.result(self.call(name, fn, path))

    def result(self, future: Future[Any]) -> Any:
        self.check_not_forked()  # no writer would ever complete it
        try:
            return future.result()
        except BackgroundWriteError:
            raise
        except BaseException:
            if self._error is not None:
                # ``from None`` would replace the cause _background_error() set.
                raise self._background_error() from self._error
            raise

    # -- flush, close ------------------------------------------------------------------
    def flush_future(self, durable: bool) -> Future[Any]:
        with self.cond:
            self.check_usable()
            if self._pending_ops == 0 and not (self._unfsynced if durable else self._unsynced):
                done: Future[Any] = Future()  # everything enqueued is synced already
                done.set_result(None)
                return done
            return self._push_flush(durable)

    def _push_flush(self, durable: bool) -> Future[Any]:
        """Enqueue a flush of everything enqueued so far. Lock held, store usable."""
        seq = self._seq
        op = _Call("flush", lambda: self._sync(seq, durable), fatal=True)
        self._push(op)
        self._last_flush = (seq, durable, op.future)
        return op.future

    def flush(self, durable: bool = False) -> None:
        self.result(self.flush_future(durable))

    def wait_synced(self, seq: int, durable: bool) -> None:
        """Return once operation ``seq`` is synced (and fsynced if ``durable``)."""
        future = self.synced_future(seq, durable)
        if future is not None:
            self.result(future)

    def synced_future(self, seq: int, durable: bool) -> Future[Any] | None:
        """A flush to wait for so that operation ``seq`` is synced; None if it already is.

        Group commit: a flush already queued that covers ``seq`` (and is durable if
        ``durable``) is returned instead of queueing another, so many handles waiting at
        once (threads, async tasks) cost one sync, not one each.
        """
        if (self.durable_seq if durable else self.synced_seq) >= seq:
            return None
        with self.cond:
            self.check_usable()
            pending = self._last_flush
            if (
                pending is not None
                and pending[0] >= seq
                and (pending[1] or not durable)
                and not pending[2].done()
            ):
                return pending[2]
            return self._push_flush(durable)

    def _sync(self, seq: int, durable: bool) -> None:
        """On the writer: sync (and fsync) the entries and commit the lengths written."""
        lengths = {path: self.lengths_on_disk[path] for path in self.dirty_lengths}
        self.driver.commit_lengths(lengths, durable)
        self.dirty_lengths.clear()
        self.synced_seq = max(self.synced_seq, seq)
        self._unsynced = False
        if durable:
            self.durable_seq = max(self.durable_seq, seq)
            self._unfsynced = False

    def close_future(self) -> Future[Any] | None:
        """Enqueue the final flush and close; None if already closed."""
        self.check_not_forked()
        with self.cond:
            if self._state is not Lifecycle.OPEN:
                return None
            self._set_state(Lifecycle.CLOSING)
            seq = self._seq
            op = _Call("close", lambda: self._close(seq), fatal=True, run_after_failure=True)
            self._push(op)
        return op.future

    def close(self) -> None:
        """Write everything pending, close the file and stop the writer; idempotent.

        Raises BackgroundWriteError (once the file is closed) if an operation failed.
        """
        future = self.close_future()
        if future is None:
            self._thread.join()
            return
        try:
            self.result(future)  # a failed close is a BackgroundWriteError too
        finally:
            self._thread.join()
        if self._error is not None:
            raise self._background_error()

    def wait_stopped(self) -> None:
        """Block until the writer thread has ended (after a close); never raises."""
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def close_quietly(self) -> None:
        """Close, logging instead of raising (for finalizers and failed opens).

        Does nothing in a forked child: the parent closes the file.
        """
        if self.forked:
            return
        try:
            self.close()
        except Exception:
            logger.exception("writebehind: closing %r failed", self.driver.file_name)

    def _close(self, seq: int) -> None:
        try:
            if self._error is None:
                self._sync(seq, durable=False)
        finally:
            self.driver.close()  # the staging buffers are dropped by _apply, lock held

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        _WRITER_THREAD.active = True
        try:
            while self._state is not Lifecycle.CLOSED:
                for op in _structure_first(self._take_batch()):
                    self._apply(op)
        except BaseException as exc:  # a bug in the engine itself: never hang the callers
            self._fail(_Op(""), exc)
            with self.cond:
                self._set_state(Lifecycle.CLOSED)
                leftover, self._ops = list(self._ops), deque()
                self.cond.notify_all()
            for op in leftover:
                op.fail(self._background_error())
            try:
                with self.driver_lock:
                    self.driver.close()
            except Exception:
                logger.exception("writebehind: closing %r failed", self.driver.file_name)

    def _data_ready(self) -> bool:
        """Whether data waits in the queue to be written (a sealed chunk, a value): then a
        structural change at its head does not linger, or the data would wait for it (a
        variable's first entries pile up in memory). Lock held."""
        if not self._ops[0].structural:
            return False
        for op in self._ops:
            if isinstance(op, _AppendChunk):
                if op.sealed:
                    return True
            elif not op.structural:
                return True
        return False

    def _take_batch(self) -> list[_Op]:
        cond = self.cond
        with cond:
            while True:
                if self._ops:
                    since = _lingers_since(self._ops[0])
                    if self._barriers or since is None or self._data_ready():
                        break
                    age = time.monotonic() - since
                    if age >= LINGER_SECONDS:
                        break
                    cond.wait(LINGER_SECONDS - age)
                else:
                    cond.wait()
            batch: list[_Op] = []
            now = time.monotonic()
            ops = self._ops
            # Once the batch changes the structure, young chunks come along: written in the
            # same batch, they cost one exit from define mode (see _structure_first), and
            # the variables created with them are usually written to once or not at all.
            structural = False
            while ops:
                op = ops[0]
                if isinstance(op, _AppendChunk) and not op.sealed:
                    young = now - op.opened_at < LINGER_SECONDS
                    if young and not self._barriers and not structural:
                        break
                    self._seal(op)
                structural = structural or op.structural
                ops.popleft()
                if op.barrier:
                    self._barriers -= 1
                batch.append(op)
        return batch

    def _apply(self, op: _Op) -> None:
        count = op.count if isinstance(op, _AppendChunk) else op.counted
        error: BaseException | None = None
        if self._error is None or (isinstance(op, _Call) and op.run_after_failure):
            if not (isinstance(op, _Call) and op.name in _READ_ONLY_CALLS):
                self._unsynced = self._unfsynced = True
            try:
                with self.driver_lock:
                    op.apply(self)
            except BaseException as exc:
                error = exc
                if not isinstance(op, _Call) or op.fatal:
                    self._fail(op, exc)
            else:
                if not isinstance(op, _Call) and op.counted:
                    self._batches += 1
                    self._bytes_written += op.nbytes
        else:
            op.fail(self._background_error())
            with self.cond:
                self._unwritten += count
        # The engine's lock only once the library lock is released: a caller holding it
        # may wait for the library lock (the GC can run another store's finalizer, which
        # closes that store, inside this store's append).
        with self.cond:
            self._pending_ops -= count
            self._pending_bytes -= op.nbytes
            self._applied += count
            if isinstance(op, _AppendChunk) and op.reusable is not None:
                self._offer_for_reuse(op.var, op.reusable)
                op.reusable = None
            if isinstance(op, _Call) and op.name == "close":
                self._set_state(Lifecycle.CLOSED)
                self._drop_free_buffers()
            self.cond.notify_all()
        if isinstance(op, _Call) and not op.future.done():
            op.finish(error)

    def _fail(self, op: _Op, exc: BaseException) -> None:
        logger.error(
            "writebehind: %s of %r in %r failed: %r", op.name, op.path, self.driver.file_name, exc
        )
        with self.cond:
            if self._error is None:
                self._error = exc
                self._unusable = True
                self._failed_op = op.name
                self._failed_path = op.path
                self._unwritten = 0

    # -- statistics -------------------------------------------------------------------
    def _rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self._bytes_written / elapsed if elapsed > 0 else 0.0

    def stats(self) -> EngineStats:
        with self.cond:
            return EngineStats(
                operations_enqueued=self._seq,
                operations_applied=self._applied,
                pending_operations=self._pending_ops,
                pending_bytes=self._pending_bytes,
                batches_written=self._batches,
                bytes_written=self._bytes_written,
                write_rate_bytes_per_second=self._rate(),
                backpressure_waits=self._backpressure_waits,
                longest_backpressure_wait_seconds=self._longest_wait,
                failed=self._error is not None,
            )


_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)  # Linux only
_MAP_FLAGS: int | None = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")
    else None
)
# Buffers from this size on are mappings of their own (see _new_buffer); smaller ones come
# from the heap, so that many variables do not each cost a mapping (vm.max_map_count).
MAP_MIN_BYTES = 256 << 10


def _new_buffer(shape: tuple[int, ...], layout: Layout, populate: bool) -> Any:
    """A fresh staging buffer: a private anonymous mapping, or from the heap if small.

    A mapping goes back to the system when the buffer is dropped. From the heap, glibc
    raises its mmap threshold to the size of the largest block freed, and then serves and
    keeps buffers of that size in the heap, where a freed one stays in the process (a
    store with 30 variables of 24 KB frames held 66 MiB after its close that way).

    The first touch of a fresh page faults (about 2 us per 4 KiB page on a VM, more than
    copying a 24 KB entry); with ``populate``, the pages are mapped in the one system call
    (MAP_POPULATE, Linux) at about half that cost, in the one append that opens the buffer
    instead of in every one.
    """
    count = math.prod(shape)
    nbytes = count * layout.dtype.itemsize
    if _MAP_FLAGS is None or nbytes < MAP_MIN_BYTES:
        return np.empty(shape, dtype=layout.dtype)
    flags = _MAP_FLAGS | (_MAP_POPULATE if populate else 0)
    region = mmap.mmap(-1, nbytes, flags=flags)
    return np.frombuffer(region, dtype=layout.dtype, count=count).reshape(shape)
