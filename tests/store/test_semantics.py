"""Write-behind semantics: snapshot, batching, ordering, read consistency, flush, close.

The behaviour suite of both faces: a test that asks for ``face_store`` or ``open_face`` runs
on the sync store and on the async one (on asyncio and trio), called the same way
(tests/faces.py). Tests of the engine through a driver of their own, or of threads, run on
the sync face; the async face's own protocol (opening, ``aclose``) is in
tests/async_store/test_async_store.py.
"""

from __future__ import annotations

import threading

import netCDF4
import numpy as np
import pytest
from faces import unwrapped

import writebehind
from writebehind import (
    AsyncHandle,
    AsyncStorageInterface,
    AsyncStorageInterfaceDirVar,
    Handle,
    StorageInterface,
    StorageInterfaceDirVar,
    StoreClosedError,
)

# Store behaviour, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends


def test_a_session_reads_back_every_earlier_write_append_and_metadata(open_face, nc_path):
    # issue 3's example, on both faces
    with open_face(nc_path) as store:
        for step in range(5):
            store.traj.positions.append(np.full((4, 3), step, dtype=np.float64))
        store.traj.energy.append(1.5)
        store.traj.energy.write(-2.5, at_index=-1)
        store.traj.add_metadata("integrator", "langevin")
        frames = store.traj.positions.read()
        last = store.traj.positions.read(at_index=-1)
        store.flush(durable=True)
        assert frames[:, 0, 0].tolist() == [0, 1, 2, 3, 4]
        assert last[0, 0] == 4
        assert store.traj.energy.read().tolist() == [-2.5]
        assert store.traj.read_metadata() == {"integrator": "langevin"}


def test_the_store_its_nodes_and_handles_are_the_faces_own_types(face, face_store):
    node = face_store.x
    if face == "sync":
        types = (StorageInterface, StorageInterfaceDirVar, Handle)
    else:
        types = (AsyncStorageInterface, AsyncStorageInterfaceDirVar, AsyncHandle)
    store_type, node_type, handle_type = types
    assert isinstance(unwrapped(face_store), store_type)
    assert isinstance(unwrapped(node), node_type)
    handle = node.append(1.0)
    assert isinstance(unwrapped(handle), handle_type)
    assert isinstance(unwrapped(face_store.y.write(2)), handle_type)
    if face == "async":
        assert isinstance(unwrapped(handle).sync_handle, Handle)


class CountingDriver(writebehind.NetCDFBackend):
    """Records every data call the writer makes (and the thread it made it from)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str, int]] = []
        self.threads: set[str] = set()

    def write_entries(self, path, start, entries):
        self.calls.append(("write_entries", path, len(entries)))
        self.threads.add(threading.current_thread().name)
        super().write_entries(path, start, entries)

    def read_entries(self, path, start, stop, step=1):
        self.threads.add(threading.current_thread().name)
        return super().read_entries(path, start, stop, step)


def test_mutating_the_array_after_append_does_not_change_what_is_stored(face_store):
    frame = np.zeros(3)
    face_store.x.append(frame)
    frame[:] = 99.0
    face_store.x.append(frame)
    np.testing.assert_array_equal(face_store.x.read(), [[0, 0, 0], [99, 99, 99]])


def test_mutating_the_array_after_write_does_not_change_what_is_stored(face_store):
    value = np.arange(3.0)
    face_store.x.write(value)
    value[:] = -1
    np.testing.assert_array_equal(face_store.x.read(), [0.0, 1.0, 2.0])


def test_mutating_a_dict_after_write_does_not_change_what_is_stored(face_store):
    value = {"a": [1, 2]}
    face_store.d.write(value)
    value["a"].append(3)
    assert face_store.d.read() == {"a": [1, 2]}


def test_contiguous_pending_appends_are_written_by_one_call(nc_path):
    driver = CountingDriver(str(nc_path), "w")
    with StorageInterface(driver) as store:
        for i in range(100):
            store.x.append(float(i))
        store.flush()
    assert [c for c in driver.calls if c[1] == "x"] == [("write_entries", "x", 100)]


def test_every_netcdf_call_runs_on_the_writer_thread(nc_path):
    driver = CountingDriver(str(nc_path), "w")
    with StorageInterface(driver) as store:
        store.x.append(1.0)
        store.x.read()
    assert len(driver.threads) == 1
    assert driver.threads.pop().startswith("writebehind-writer")


def test_read_sees_every_earlier_write(face_store):
    for i in range(10):
        face_store.x.append(i)
        assert face_store.x.read().tolist() == list(range(i + 1))


def test_read_sees_earlier_write_at_index(face_store):
    for i in range(5):
        face_store.x.append(i)
    face_store.x.write(42, at_index=2)
    assert face_store.x.read().tolist() == [0, 1, 42, 3, 4]


def test_operations_on_one_variable_apply_in_order(face_store):
    face_store.x.append(1)
    face_store.x.write(10, at_index=0)
    face_store.x.append(2)
    face_store.x.write(20, at_index=-1)
    face_store.x.append(3)
    assert face_store.x.read().tolist() == [10, 20, 3]


def test_fixed_write_overwrites_previous_value(face_store):
    face_store.x.write(1.0)
    face_store.x.write(2.0)
    assert face_store.x.read() == 2.0


def test_read_at_index_returns_one_entry(face_store):
    for i in range(5):
        face_store.x.append(np.full(2, i))
    np.testing.assert_array_equal(face_store.x.read(at_index=3), [3, 3])
    np.testing.assert_array_equal(face_store.x.read(at_index=-1), [4, 4])


def test_read_at_index_of_appended_scalars_gives_python_scalar(face_store):
    face_store.x.append(1.5)
    face_store.x.append(2.5)
    assert face_store.x.read(at_index=1) == 2.5 and type(face_store.x.read(at_index=1)) is float


def test_read_slice_returns_those_entries(face_store):
    for i in range(10):
        face_store.x.append(i)
    assert face_store.x.read(at_index=slice(2, 8, 2)).tolist() == [2, 4, 6]
    assert face_store.x.read(at_index=slice(-3, None)).tolist() == [7, 8, 9]


def test_read_slice_reads_only_the_requested_rows(nc_path):
    calls = []

    class Recording(writebehind.NetCDFBackend):
        def read_entries(self, path, start, stop, step=1):
            calls.append((start, stop, step))
            return super().read_entries(path, start, stop, step)

    with StorageInterface(Recording(str(nc_path), "w")) as store:
        for i in range(10):
            store.x.append(i)
        store.x.read(at_index=slice(3, 5))
    assert calls == [(3, 5, 1)]


def test_len_counts_pending_entries(face_store):
    for i in range(7):
        face_store.x.append(i)
    assert len(face_store.x) == 7


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_flush_makes_data_visible_to_another_reader(face_store, nc_path):
    for i in range(5):
        face_store.x.append(float(i))
    face_store.flush()
    with netCDF4.Dataset(nc_path) as ds:
        assert ds["x"][:5].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_flush_durable_returns_and_data_is_on_disk(face_store, nc_path):
    face_store.x.append(1.0)
    face_store.flush(durable=True)
    with netCDF4.Dataset(nc_path) as ds:
        assert ds["x"][0] == 1.0


def test_close_is_idempotent(face_store):
    face_store.x.append(1)
    face_store.close()
    face_store.close()
    assert face_store.closed


def test_close_writes_everything_pending(face_store, nc_path, reopen):
    for i in range(1000):
        face_store.x.append(i)
    face_store.close()
    with reopen(nc_path) as again:
        assert again.x.read().tolist() == list(range(1000))


def test_with_block_closes_the_store(open_face, nc_path):
    with open_face(nc_path, "w") as store:
        store.x.append(1)
    assert store.closed


def test_with_block_that_raises_writes_what_was_enqueued_and_propagates(open_face, nc_path, reopen):
    with pytest.raises(RuntimeError, match="boom"), open_face(nc_path, "w") as store:
        store.x.append(1)
        store.x.append(2)
        raise RuntimeError("boom")
    assert store.closed
    with reopen(nc_path) as again:
        assert again.x.read().tolist() == [1, 2]


def test_unclosed_store_is_closed_when_garbage_collected(open_store, nc_path, reopen):
    import gc

    store = open_store(nc_path, "w")
    store.x.append(5)
    del store
    gc.collect()
    with reopen(nc_path) as again:
        assert again.x.read().tolist() == [5]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.x.append(1),
        lambda s: s.x.write(1),
        lambda s: s.x.read(),
        lambda s: s.add_metadata("a", 1),
        lambda s: s.x.add_metadata("a", 1),
        lambda s: s.read_metadata(),
        lambda s: s.flush(),
    ],
    ids=["append", "write", "read", "add_metadata", "node_add_metadata", "read_metadata", "flush"],
)
def test_any_call_on_a_closed_store_raises_store_closed(face_store, call):
    face_store.x.append(1)
    face_store.close()
    with pytest.raises(StoreClosedError):
        call(face_store)


def test_a_node_taken_before_the_close_raises_store_closed(face_store):
    node = face_store.x
    face_store.close()
    with pytest.raises(StoreClosedError):
        node.append(1)


def test_store_closed_error_is_a_value_error():
    assert issubclass(StoreClosedError, ValueError)
    assert issubclass(StoreClosedError, writebehind.WriteBehindError)


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_handle_committed_waits_until_synced(face_store, nc_path):
    handle = face_store.x.append(3.0)
    handle.committed()
    assert handle.is_committed()
    with netCDF4.Dataset(nc_path) as ds:
        assert ds["x"][0] == 3.0


def test_a_handle_is_not_committed_before_a_flush_covers_it(face_store):
    handle = face_store.x.append(1.0)
    assert not handle.is_committed()
    handle.committed()
    assert handle.is_committed()


def test_committed_of_a_handle_of_a_closed_store_returns_since_the_close_synced_it(
    open_face, nc_path
):
    store = open_face(nc_path, "w")
    handle = store.x.append(1.0)
    store.close()
    handle.committed()
    assert handle.is_committed()


def test_handle_durable_marks_durable(face_store):
    handle = face_store.x.append(3.0)
    handle.durable()
    assert handle.is_durable() and handle.is_committed()


def test_backpressure_bounds_pending_bytes(open_face, nc_path):
    entry = np.ones(1000)  # 8 kB
    limit = 64 * 1024
    seen = []
    with open_face(nc_path, "w", max_pending_bytes=limit) as store:
        for _ in range(200):
            store.x.append(entry)
            seen.append(store.stats().pending_bytes)
        assert len(store.x) == 200
    assert max(seen) <= limit + entry.nbytes


def test_backpressure_wait_is_counted_in_stats(open_face, nc_path):
    with open_face(nc_path, "w", max_pending_bytes=16 * 1024) as store:
        for _ in range(200):
            store.x.append(np.ones(1000))
        assert store.stats().backpressure_waits > 0


def test_several_threads_share_one_store_and_keep_their_order(store):
    def produce(name):
        for i in range(500):
            store[name].append(i)

    threads = [threading.Thread(target=produce, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert store[f"t{k}"].read().tolist() == list(range(500))


def test_threads_appending_to_one_variable_lose_nothing(store):
    def produce(k):
        for i in range(300):
            store.x.append(k * 1000 + i)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = store.x.read().tolist()
    assert sorted(values) == sorted(k * 1000 + i for k in range(3) for i in range(300))
    for k in range(3):
        mine = [v for v in values if v // 1000 == k]
        assert mine == sorted(mine)


def test_stats_after_flush_show_everything_applied(face_store):
    for i in range(10):
        face_store.x.append(i)
    face_store.y.write("s")
    face_store.flush()
    stats = face_store.stats()
    assert stats.pending_operations == 0 and stats.pending_bytes == 0
    assert stats.operations_applied == stats.operations_enqueued


def test_a_node_keeps_its_store_open(open_store, nc_path, reopen):
    import gc

    positions = open_store(nc_path, "w").traj.positions
    gc.collect()
    positions.append(1.0)
    positions.append(2.0)
    assert positions.read().tolist() == [1.0, 2.0]


def test_a_fixed_variable_is_created_together_with_its_value(nc_path):
    """The file never holds a fixed variable without a value (no create-then-write gap)."""
    calls = []

    class Recording(writebehind.NetCDFBackend):
        def create_variable(self, path, layout, appendable):
            calls.append(("create", path))
            super().create_variable(path, layout, appendable)

        def write_value(self, path, value):
            calls.append(("write", path))
            super().write_value(path, value)

    with StorageInterface(Recording(str(nc_path), "w")) as store:
        before = store.stats().operations_enqueued  # the open's own operation
        handle = store.x.write(np.arange(3))
        store.x.write(np.arange(3) + 1)
        handle.committed()
        assert store.stats().operations_enqueued - before == 2 + 1  # two writes, the flush
    assert calls == [("create", "x"), ("write", "x"), ("write", "x")]


class _SyncGatedDriver(writebehind.NetCDFBackend):
    """The writer's syncs wait until ``gate`` is set."""

    def __init__(self, file_name, access_mode=None):
        super().__init__(file_name, access_mode)
        self.gate = threading.Event()

    def sync(self, durable):
        assert self.gate.wait(timeout=10), "the test never opened the gate"
        super().sync(durable)


def test_handles_waiting_at_once_share_one_flush(nc_path):
    """Group commit: committed() joins a queued flush that covers its operation."""
    driver = _SyncGatedDriver(str(nc_path), "w")
    with StorageInterface(driver) as store:
        handles = [store.x.append(float(i)) for i in range(8)]
        engine = store._core.engine
        before = store.stats().operations_enqueued
        plain = {id(engine.synced_future(h.seq, durable=False)) for h in handles}
        durable = {id(engine.synced_future(h.seq, durable=True)) for h in handles}
        assert len(plain) == 1 and len(durable) == 1 and plain != durable
        assert store.stats().operations_enqueued - before == 2  # two flushes, not sixteen
        threads = [threading.Thread(target=h.committed) for h in handles]
        for thread in threads:
            thread.start()
        driver.gate.set()
        for thread in threads:
            thread.join(timeout=60)
        assert all(h.is_durable() for h in handles)
    with writebehind.open(nc_path, "r") as reopened:
        assert reopened.x.read().tolist() == [float(i) for i in range(8)]


def test_a_durable_wait_does_not_join_a_plain_flush(nc_path):
    driver = _SyncGatedDriver(str(nc_path), "w")
    with StorageInterface(driver) as store:
        handle = store.x.append(1.0)
        engine = store._core.engine
        plain = engine.synced_future(handle.seq, durable=False)
        durable = engine.synced_future(handle.seq, durable=True)
        assert durable is not plain
        assert engine.synced_future(handle.seq, durable=False) is durable  # covers it too
        driver.gate.set()
        handle.durable()
        assert handle.is_durable()
