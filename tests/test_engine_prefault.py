"""Pre-faulted staging buffers for large entries, and the flush with nothing to sync."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import writebehind
from writebehind import _engine, _staging
from writebehind._engine import Engine

LARGE = (90_000, 3)  # 2.16 MB of float64: staged alone
ENTRY_NBYTES = 8 * 90_000 * 3

needs_populate = pytest.mark.skipif(
    not _staging.can_prefault(), reason="MAP_POPULATE is Linux only"
)


def open_store(path: Path, **options: int) -> writebehind.StorageInterface:
    return writebehind.StorageInterface(writebehind.NetCDFIODriver(str(path), "w"), **options)


def engine_of(store: writebehind.StorageInterface) -> Engine:
    return store._core.engine


def wait_until(condition: object, seconds: float = 30.0) -> bool:
    """Poll ``condition`` (a liveness bound, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


@needs_populate
def test_the_writer_prefaults_buffers_for_a_variable_of_large_entries(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any rate then asks for more buffers than were written (how fast the appends come
    # depends on the machine's load).
    monkeypatch.setattr(_staging, "PREFAULT_HORIZON_SECONDS", 1000.0)
    store = open_store(nc_path)
    engine = engine_of(store)
    for _ in range(5):
        store.x.append(np.zeros(LARGE))
    store.flush()
    # The writer tops up after its batch, so after the flush returns.
    assert wait_until(lambda: engine.prefaulted_buffers >= 1)
    assert engine.nodes["x"].free_buffers  # ready for the next append
    store.close()


@needs_populate
def test_prefaulted_and_recycled_memory_stays_within_the_store_budget(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_engine, "RECYCLE_BYTES_PER_STORE", 3 * ENTRY_NBYTES)
    monkeypatch.setattr(_staging, "PREFAULT_HORIZON_SECONDS", 1000.0)  # want many
    store = open_store(nc_path)
    engine = engine_of(store)
    for name in ("a", "b", "c"):
        for _ in range(4):
            store[name].append(np.ones(LARGE))
        store.flush()

    def kept() -> int:
        return sum(b.nbytes for v in engine.nodes.values() for b in getattr(v, "free_buffers", []))

    # The writer tops up after the flush's batch: wait until it has placed what it reserved.
    assert wait_until(lambda: engine._free_bytes == kept())
    assert 0 < kept() <= 3 * ENTRY_NBYTES
    store.close()


@needs_populate
def test_prefaulted_and_pending_bytes_stay_within_max_pending_bytes(nc_path: Path) -> None:
    limit = 4 * ENTRY_NBYTES
    store = open_store(nc_path, max_pending_bytes=limit)
    engine = engine_of(store)
    worst = 0
    for _ in range(30):
        store.x.append(np.ones(LARGE))
        with engine.lock:
            worst = max(worst, engine._pending_bytes + engine._free_bytes)
    store.close()
    # An append takes its room before its buffer: one entry over, as backpressure allows.
    assert worst <= limit + ENTRY_NBYTES


def test_appends_reuse_a_bounded_set_of_staging_buffers(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(nc_path)
    driver = store._core.driver
    addresses: set[int] = set()
    write_entries = driver.write_entries

    def recording(path: str, start: int, entries: np.ndarray) -> None:
        addresses.add(entries.ctypes.data)
        write_entries(path, start, entries)

    monkeypatch.setattr(driver, "write_entries", recording)
    for i in range(40):
        store.x.append(np.full(LARGE, float(i)))
        store.flush()  # written and recycled before the next append
    var = engine_of(store).nodes["x"]
    assert len(addresses) <= var.max_free_buffers + 1  # not one buffer per append
    np.testing.assert_array_equal(store.x.read()[:, 1, 2], np.arange(40.0))
    store.close()


def test_large_entries_from_many_threads_with_prefaulting_are_written_exactly(
    nc_path: Path,
) -> None:
    store = open_store(nc_path, max_pending_bytes=6 * ENTRY_NBYTES)

    def producer(thread: int) -> None:
        for i in range(12):
            store[f"t{thread}"].append(np.full(LARGE, thread * 100.0 + i))
            if i % 4 == 3:
                store.flush()

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for thread in range(3):
        values = store[f"t{thread}"].read()
        expected = thread * 100.0 + np.arange(12.0)
        np.testing.assert_array_equal(values[:, 0, 0], expected)
        np.testing.assert_array_equal(values[:, -1, -1], expected)  # whole entries
    store.close()


@needs_populate
def test_close_releases_prefaulted_buffers(nc_path: Path) -> None:
    store = open_store(nc_path)
    engine = engine_of(store)
    for _ in range(3):
        store.x.append(np.zeros(LARGE))
    store.flush()
    assert engine.nodes["x"].free_buffers
    store.close()
    assert not engine.nodes["x"].free_buffers and engine._free_bytes == 0
    assert not engine._streaming and engine.nodes["x"].rate is None


@needs_populate
def test_an_idle_variable_is_no_longer_topped_up(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_staging, "IDLE_SECONDS", 0.0)
    store = open_store(nc_path)
    engine = engine_of(store)
    store.x.append(np.zeros(LARGE))
    store.flush()
    store.y.append(1.0)  # the writer passes again, the large variable now idle
    store.flush()
    assert wait_until(lambda: not engine._streaming)
    assert engine.nodes["x"].rate is None
    store.close()


def test_append_rate_counts_a_burst_at_once_and_halves_after_a_pause() -> None:
    rate = _staging.AppendRate(now=0.0)
    rate.appended = 10
    assert rate.update(0.01) == pytest.approx(1000.0)
    assert rate.wanted() == 20  # 20 ms of appends at 1000/s
    assert rate.update(0.02) == pytest.approx(500.0)  # no appends: half
    assert not rate.idle(0.5) and rate.idle(0.01 + _staging.IDLE_SECONDS + 0.1)


def test_append_rate_wants_one_buffer_for_a_slow_variable() -> None:
    rate = _staging.AppendRate(now=0.0)
    rate.appended = 1
    rate.update(10.0)
    assert rate.wanted() == 1


def test_no_prefaulting_without_large_entries(nc_path: Path) -> None:
    store = open_store(nc_path)
    engine = engine_of(store)
    for _ in range(50):
        store.x.append(np.ones((1000, 3)))
    store.flush()
    assert engine.prefaulted_buffers == 0 and not engine._streaming
    store.close()


# -- the flush with nothing to sync ----------------------------------------------------------
def count_syncs(store: writebehind.StorageInterface, monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list[bool] = []
    driver = store._core.driver
    sync = driver.sync

    def counted(durable: bool = False) -> None:
        calls.append(durable)
        sync(durable)

    monkeypatch.setattr(driver, "sync", counted)
    return calls


def test_a_flush_with_nothing_new_does_not_sync_again(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.flush()
    store.x.read()  # a read changes nothing either
    store.flush()
    assert calls == []
    store.close()


def test_a_flush_after_an_append_syncs(nc_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.x.append(2.0)
    store.flush()
    assert calls and store.stats().pending_operations == 0
    store.close()


def test_a_durable_flush_after_a_plain_one_still_fsyncs(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.flush(durable=True)
    store.flush(durable=True)  # now nothing new: no second fsync
    assert calls == [True]
    store.close()


def test_a_flush_after_metadata_syncs(nc_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.x.add_metadata("note", "a")
    store.flush()
    assert calls
    store.close()


def test_a_flush_of_a_closed_store_still_raises(nc_path: Path) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.close()
    with pytest.raises(writebehind.StoreClosedError):
        store.flush()


@needs_populate
def test_a_failed_prefault_turns_it_off_and_the_store_goes_on(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(*args: object, **kwargs: object) -> object:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(_staging, "PREFAULT_HORIZON_SECONDS", 1000.0)  # it will try
    store = open_store(nc_path)
    engine = engine_of(store)
    monkeypatch.setattr(_engine, "_new_buffer", no_memory)
    for i in range(5):
        store.x.append(np.full(LARGE, float(i)))  # staged alone: np.empty, not _new_buffer
    store.flush()
    assert wait_until(lambda: not engine.prefault)
    store.x.append(np.full(LARGE, 5.0))
    np.testing.assert_array_equal(store.x.read()[:, 0, 0], np.arange(6.0))
    assert not store.stats().failed
    store.close()
