"""store.stats(): the counters agree with what was written; the backpressure warning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind import (
    BackgroundWriteError,
    EngineStats,
    NetCDFBackend,
    StorageInterface,
)


class GatedDriver(NetCDFBackend):
    """Appended entries reach the file only while ``gate`` is set."""

    def __init__(self, file_name: str, access_mode: str | None = None):
        super().__init__(file_name, access_mode)
        self.gate = threading.Event()

    def write_entries(self, path: str, start: int, entries: Any) -> None:
        assert self.gate.wait(timeout=60), "the test never opened the gate"
        super().write_entries(path, start, entries)


class FailingDriver(NetCDFBackend):
    def write_entries(self, path: str, start: int, entries: Any) -> None:
        raise OSError(28, "No space left on device")


@pytest.fixture
def gated(nc_path: Path) -> Iterator[tuple[StorageInterface, GatedDriver]]:
    driver = GatedDriver(str(nc_path), "w")
    store = StorageInterface(driver, max_pending_bytes=1000)
    yield store, driver
    driver.gate.set()
    store.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def test_stats_is_an_immutable_record(store: StorageInterface) -> None:
    stats = store.stats()
    assert isinstance(stats, EngineStats)
    with pytest.raises(AttributeError):
        stats.operations_applied = 0  # type: ignore[misc]


def test_applied_equals_enqueued_after_flush(store: StorageInterface) -> None:
    for i in range(100):
        store.traj.positions.append(np.full((4, 3), i, dtype=np.float64))
        store.traj.step.append(i)
    store.temperature.write(300.0)
    store.flush()
    stats = store.stats()
    assert stats.operations_applied == stats.operations_enqueued
    assert stats.operations_enqueued >= 201
    assert (stats.pending_operations, stats.pending_bytes) == (0, 0)


def test_enqueued_is_applied_plus_pending_while_writing(store: StorageInterface) -> None:
    for i in range(2000):
        store.x.append(np.full(100, i, dtype=np.float64))
        if i % 100 == 0:
            stats = store.stats()
            assert stats.operations_enqueued == stats.operations_applied + stats.pending_operations


def test_bytes_written_is_the_payload_written(store: StorageInterface) -> None:
    for _ in range(10):
        store.positions.append(np.zeros((4, 3), dtype=np.float64))  # 96 bytes each
    store.step.write(np.int64(7))  # 8 bytes
    store.weights.write(np.ones(5, dtype=np.float32))  # 20 bytes
    store.flush()
    assert store.stats().bytes_written == 10 * 96 + 8 + 20


def test_contiguous_appends_are_written_in_few_batches(store: StorageInterface) -> None:
    for i in range(200):
        store.energy.append(float(i))
    store.flush()
    stats = store.stats()
    # 200 appends plus the creation of the variable; the appends share a few chunk writes.
    assert 2 <= stats.batches_written < 100


def test_write_rate_is_positive_once_bytes_are_written(store: StorageInterface) -> None:
    assert store.stats().write_rate_bytes_per_second == 0.0
    store.x.append(np.zeros(1000))
    store.flush()
    assert store.stats().write_rate_bytes_per_second > 0.0


def test_pending_counts_appends_the_writer_has_not_written(
    gated: tuple[StorageInterface, GatedDriver],
) -> None:
    store, driver = gated
    store.x.append(np.zeros(10))  # 80 bytes, under max_pending_bytes
    store.x.append(np.zeros(10))
    stats = store.stats()
    assert stats.pending_bytes == 160
    assert stats.pending_operations >= 2
    driver.gate.set()
    store.flush()
    assert (store.stats().pending_operations, store.stats().pending_bytes) == (0, 0)


def test_backpressure_is_counted_and_warned_about_once(
    gated: tuple[StorageInterface, GatedDriver], caplog: pytest.LogCaptureFixture
) -> None:
    store, driver = gated
    entry = np.zeros(100)  # 800 bytes; max_pending_bytes is 1000

    def producer() -> None:
        for _ in range(3):  # the third append waits until the writer catches up
            store.x.append(entry)

    caplog.set_level(logging.WARNING, logger="writebehind")
    for episode in (1, 2):
        thread = threading.Thread(target=producer)
        thread.start()
        wait_until(lambda e=episode: store.stats().backpressure_waits == e, "a producer waits")
        assert thread.is_alive()  # blocked in append
        driver.gate.set()
        thread.join(timeout=60)
        assert not thread.is_alive()
        store.flush()
        driver.gate.clear()
    stats = store.stats()
    assert stats.backpressure_waits == 2
    assert stats.longest_backpressure_wait_seconds > 0.0
    warnings = [r for r in caplog.records if "backpressure engaged" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "max_pending_bytes=1000" in warnings[0].getMessage()


def test_failed_is_reported_after_a_background_failure(nc_path: Path) -> None:
    store = StorageInterface(FailingDriver(str(nc_path), "w"))
    assert store.stats().failed is False
    store.x.append(np.zeros(3))
    with pytest.raises(BackgroundWriteError):
        store.flush()
    assert store.stats().failed is True
    with pytest.raises(BackgroundWriteError):
        store.close()


def test_stats_after_close_are_final(nc_path: Path) -> None:
    store = writebehind.open(nc_path, "w")
    for i in range(50):
        store.x.append(i)
    store.close()
    stats = store.stats()
    assert stats.operations_applied == stats.operations_enqueued
    assert stats.bytes_written == 50 * 8


def test_the_first_write_of_a_new_fixed_variable_waits_under_backpressure(
    gated: tuple[StorageInterface, GatedDriver],
) -> None:
    """Creating a variable carries its first value: it is held to max_pending_bytes too."""
    store, driver = gated
    store.x.append(np.zeros(100))  # 800 bytes pending; max_pending_bytes is 1000
    writer = threading.Thread(target=store.y.write, args=(np.ones(100),))
    writer.start()
    wait_until(lambda: store.stats().backpressure_waits == 1, "the write waits for room")
    assert writer.is_alive() and "y" not in store
    driver.gate.set()
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert store.y.read().tolist() == [1.0] * 100
