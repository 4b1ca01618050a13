"""Staging of appends: large entries copied outside the lock, recycled buffers, chunking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

import writebehind
from writebehind import _engine
from writebehind._engine import Staging
from writebehind.codecs.base import Layout
from writebehind.drivers.netcdf import chunk_shape

# The engine's staging, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends

LARGE = (90_000, 3)  # 2.16 MB of float64: a buffer (and a file chunk or more) to itself


def chunk_entries(layout: Layout) -> int:
    """The netCDF backend's chunk of ``layout``, which the engine stages by."""
    return writebehind.NetCDFBackend("unused.nc").chunk_entries(layout)


@pytest.fixture
def open_store(make_driver: Any) -> Callable[..., writebehind.StorageInterface]:
    """``open_store(path, **options)``: a new store at ``path`` on the test's backend."""

    def open_store(path: Path, **options: int) -> writebehind.StorageInterface:
        return writebehind.StorageInterface(make_driver(path, "w"), **options)

    return open_store


def test_large_entries_are_staged_alone_and_small_ones_in_shared_buffers() -> None:
    def capacity(shape: tuple[int, ...]) -> int:
        layout = Layout("numeric", np.dtype("f8"), shape)
        return Staging("x", layout, lambda v: v, chunk_entries(layout)).capacity

    assert capacity(LARGE) == 1
    file_chunk = chunk_shape(Layout("numeric", np.dtype("f8"), (1000, 3)))[0]
    assert capacity((1000, 3)) % file_chunk == 0  # whole file chunks
    assert capacity((1000, 3)) * 24_000 > 4 << 20  # a few hundred entries a buffer
    assert capacity(()) > 1


def test_large_entry_is_snapshotted_when_append_returns(open_store: Any, nc_path: Path) -> None:
    store = open_store(nc_path)
    frame = np.zeros(LARGE)
    store.x.append(frame)
    frame[...] = 1.0
    store.x.append(frame)
    np.testing.assert_array_equal(store.x.read()[:, 0, 0], [0.0, 1.0])
    store.close()


def test_large_and_small_operations_on_a_variable_apply_in_order(
    open_store: Any, nc_path: Path
) -> None:
    store = open_store(nc_path)
    for i in range(3):
        store.x.append(np.full(LARGE, float(i)))
    store.x.write(np.full(LARGE, 9.0), at_index=1)
    store.x.append(np.full(LARGE, 3.0))
    np.testing.assert_array_equal(store.x.read()[:, -1, -1], [0.0, 9.0, 2.0, 3.0])
    store.close()


def test_large_entries_from_many_threads_are_all_written_in_each_threads_order(
    open_store: Any,
    nc_path: Path,
) -> None:
    store = open_store(nc_path)
    store.x.append(np.full(LARGE, -1.0))

    def producer(thread: int) -> None:
        for i in range(5):
            store.x.append(np.full(LARGE, thread * 100.0 + i))

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = store.x.read()[1:, 0, 0]
    store.close()
    for thread in range(4):
        mine = [v for v in values if thread * 100 <= v < thread * 100 + 100]
        assert mine == [thread * 100.0 + i for i in range(5)]


def test_backpressure_bounds_the_pending_bytes_of_large_entries(
    open_store: Any, nc_path: Path
) -> None:
    entry = np.zeros(LARGE)
    limit = 3 * entry.nbytes
    store = open_store(nc_path, max_pending_bytes=limit)
    worst = 0
    for _ in range(12):
        store.x.append(entry)
        worst = max(worst, store.stats().pending_bytes)
    store.close()
    assert worst <= limit + entry.nbytes


def test_a_large_copy_that_fails_queues_nothing_and_releases_its_room(
    open_store: Any, nc_path: Path
) -> None:
    store = open_store(nc_path)
    store.x.append(np.zeros(LARGE))
    store.flush()
    var = store._core.engine._staging["x"]
    with pytest.raises(ValueError):
        store._core.engine.append(var, np.zeros((7, 7)))  # cannot be copied into an entry
    assert store.stats().pending_bytes == 0
    assert len(store.x) == 1
    store.close()


def test_recycled_buffers_hold_only_the_new_entries(open_store: Any, nc_path: Path) -> None:
    store = open_store(nc_path)
    for value in (1.0, 2.0):
        for _ in range(3):
            store.x.append(np.full(LARGE, value))
            store.y.append(np.full((1000, 3), value))
        store.flush()  # written: their buffers go back to the free lists
    np.testing.assert_array_equal(store.x.read()[:, 5, 1], [1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(store.y.read()[:, 5, 1], [1, 1, 1, 2, 2, 2])
    store.close()


def test_a_slowly_appended_variable_reuses_its_first_buffer(open_store: Any, nc_path: Path) -> None:
    # Entries appended further apart than the writer takes them (a trajectory's frames):
    # each goes into a new chunk, whose buffer is the one the previous entry was written from.
    store = open_store(nc_path)
    buffers = set()
    for value in range(5):
        store.box.append(np.full((3, 3), float(value)))
        var = store.box._var
        assert var.open_chunk is not None and var.length < var.first_capacity < var.capacity
        buffers.add(id(var.open_chunk.buffer))
        store.flush()  # written: its buffer goes back to the free list
    assert len(buffers) == 1
    np.testing.assert_array_equal(store.box.read()[:, 2, 2], [0, 1, 2, 3, 4])
    store.close()


@pytest.mark.file_specific("the chunk shape of a netCDF variable")
def test_entries_larger_than_a_chunk_are_split_into_equal_chunks(
    open_store: Any, nc_path: Path
) -> None:
    store = open_store(nc_path)
    store.x.append(np.zeros((100_000, 3)))
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        chunks = ds["x"].chunking()
    pieces = -(-100_000 // chunks[1])
    assert chunks[0] == 1 and pieces * chunks[1] - 100_000 < pieces  # no overhanging chunk


def test_try_append_of_a_large_entry_without_room_stages_nothing(
    open_store: Any, nc_path: Path
) -> None:
    entry = np.zeros(LARGE)
    store = open_store(nc_path, max_pending_bytes=entry.nbytes)
    engine = store._core.engine
    release = threading.Event()
    engine.call("hold the writer", release.wait)
    store.x.append(entry)  # the writer is held: its room stays taken
    var = engine._staging["x"]
    try:
        assert engine.try_append(var, np.ones(LARGE)) is None
        assert (len(store.x), store.stats().pending_bytes) == (1, entry.nbytes)
    finally:
        release.set()
    store.flush()
    assert engine.try_append(var, np.ones(LARGE)) is not None
    np.testing.assert_array_equal(store.x.read()[:, 0, 0], [0.0, 1.0])
    store.close()


def test_entries_across_the_small_first_buffer_and_the_full_ones_keep_their_order(
    open_store: Any,
    nc_path: Path,
) -> None:
    store = open_store(nc_path)
    var = None
    chunk_entries = store._core.driver.chunk_entries(Layout("numeric", np.dtype("f8"), (1000, 3)))
    for i in range(500):  # one file chunk in the first buffer, then buffers of a few hundred
        store.x.append(np.full((1000, 3), float(i)))
        if i == 0:
            var = store._core.engine._staging["x"]
            assert var.open_chunk is not None and len(var.open_chunk.buffer) == chunk_entries
        if i == 250:
            store.flush()  # written buffers are recycled while appends go on
    assert var is not None and var.capacity > chunk_entries
    np.testing.assert_array_equal(store.x.read()[:, 999, 2], np.arange(500.0))
    store.close()


def test_a_store_keeps_at_most_its_recycling_budget_in_free_buffers(
    open_store: Any, nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written buffers are kept for reuse per variable, but all variables together keep at
    # most RECYCLE_BYTES_PER_STORE: memory beyond the pending entries must not grow with
    # the number of variables.
    store = open_store(nc_path)
    engine = store._core.engine
    layout = Layout("numeric", np.dtype("f8"), (1000, 3))
    capacity = Staging("x", layout, id, store._core.driver.chunk_entries(layout))
    buffer_nbytes = capacity.capacity * 24_000
    monkeypatch.setattr(_engine, "RECYCLE_BYTES_PER_STORE", 3 * buffer_nbytes)
    frame = np.ones((1000, 3))
    nodes = [store.traj[f"v{i}"] for i in range(6)]
    for _ in range(3):
        for _ in range(capacity.capacity):
            for node in nodes:
                node.append(frame)
        store.flush()
    free = [b for v in engine._staging.values() for b in v.free_buffers]
    assert 0 < sum(b.nbytes for b in free) <= 3 * buffer_nbytes
    assert engine._free_bytes == sum(b.nbytes for b in free)
    assert all(len(node) == 3 * capacity.capacity for node in nodes)
    store.close()


def test_an_append_to_an_idle_store_is_written_without_a_flush(
    open_store: Any, nc_path: Path
) -> None:
    # The writer sleeps without a timeout when its queue is empty; an append that opens a
    # chunk must wake it, or the entry waits in memory for the next flush (it did).
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()  # the queue is empty: the writer is idle
    store.x.append(2.0)
    deadline = time.monotonic() + 30  # a liveness bound, not a timing claim (linger: 50 ms)
    while store.stats().pending_operations and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.stats().pending_operations == 0
    store.close()


def wait_until_written(store: writebehind.StorageInterface) -> None:
    deadline = time.monotonic() + 30  # a liveness bound, not a timing claim (linger: 50 ms)
    while store.stats().pending_operations and time.monotonic() < deadline:
        time.sleep(0.01)


def test_variables_created_behind_a_lingering_chunk_are_written_without_a_flush(
    open_store: Any, nc_path: Path
) -> None:
    # The writer lingers over the young chunk of x with a timeout, and is not woken for the
    # creations queued behind it: its timeout must still take them.
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    store.x.append(2.0)
    for i in range(5):
        store[f"made/v{i}"].write(float(i))
        store[f"made/a{i}"].append(float(i))
    wait_until_written(store)
    assert store.stats().pending_operations == 0
    store.close()


def test_a_loop_creating_variables_does_not_wake_the_writer_at_each_one(
    open_store: Any, nc_path: Path
) -> None:
    # Each wake-up of the writer takes the GIL and the engine's lock from the caller.
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    engine = store._core.engine
    notify_all = engine.cond.notify_all
    wakes = 0

    def counted() -> None:
        nonlocal wakes
        wakes += 1
        notify_all()

    engine.cond.notify_all = counted
    for i in range(100):
        store[f"g{i // 10}/v{i}"].append(np.arange(3.0))
    # One to wake the idle writer; a few more if it took a batch meanwhile (a loaded machine).
    assert wakes < 20
    engine.cond.notify_all = notify_all
    store.close()


@pytest.mark.file_specific("netCDF's process-wide library lock")
def test_a_store_closed_under_another_stores_lock_does_not_deadlock(
    open_store: Any, tmp_path: Path
) -> None:
    # The cyclic GC runs a store's finalizer on whatever thread allocates, for example a
    # caller inside another store's append, holding that store's lock. The finalizer
    # closes its store, whose writer needs netCDF's process-wide library lock; so no
    # writer may wait for its own store's lock while it holds the library lock.
    from writebehind._core import finalize as _finalize

    a, b = open_store(tmp_path / "a.nc"), open_store(tmp_path / "b.nc")
    for store in (a, b):
        store._finalizer.detach()  # a deadlock must not also hang the interpreter's exit
    b.x.append(1.0)
    inside, go_on = threading.Event(), threading.Event()
    driver = a._core.driver
    write_entries = driver.write_entries

    def held_write_entries(*args: object) -> None:
        inside.set()
        go_on.wait()
        write_entries(*args)

    driver.write_entries = held_write_entries  # type: ignore[method-assign]
    a.big.append(np.zeros(LARGE))  # a buffer to itself, recycled once written
    assert inside.wait(60)  # A's writer is in write_entries, holding the library lock
    closed = threading.Event()

    def caller_in_a_lock() -> None:
        with a._core.engine._mutex:  # as in A's append, where the GC ran B's finalizer
            go_on.set()
            _finalize(b._core)
        closed.set()

    threading.Thread(target=caller_in_a_lock, daemon=True).start()
    assert closed.wait(60), "closing B under A's lock deadlocked with A's writer"
    a.close()
    with netCDF4.Dataset(tmp_path / "b.nc") as ds:
        assert ds["x"][:].tolist() == [1.0]
