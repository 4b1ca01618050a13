"""Faults injected into the driver: what the user sees, what is kept (docs/failure-modes.md).

A driver subclass raises ``OSError(ENOSPC)`` from the method under test once it is armed, the
way a full disk shows up on the writer thread. Every test has a timeout: a fault must never
turn into a hang.
"""

from __future__ import annotations

import errno
import logging
import threading
import time

import numpy as np
import pytest

import writebehind
from writebehind import (
    BackgroundWriteError,
    NetCDFBackend,
    NetCDFIODriver,
    StorageInterface,
    StoreClosedError,
)

pytestmark = pytest.mark.timeout(30)

ENTRY = 8  # floats per appended entry


class FaultyDriver(NetCDFBackend):
    """A NetCDFBackend whose ``fail_in`` method raises ENOSPC once ``arm()`` was called."""

    def __init__(self, file_name: str, mode: str | None = "w", *, fail_in: str = "write_entries"):
        super().__init__(file_name, mode)
        self.fail_in = fail_in
        self.armed = threading.Event()
        self.entered = threading.Event()  # the failing method was reached
        self.release = threading.Event()  # set to let a blocked method continue
        self.block = False

    def arm(self) -> None:
        self.armed.set()

    def _fault(self, where: str) -> None:
        if where != self.fail_in or not self.armed.is_set():
            return
        self.entered.set()
        if self.block:
            self.release.wait(20)
        raise OSError(errno.ENOSPC, "No space left on device (injected)", self.file_name)

    def write_entries(self, path, start, entries):
        self._fault("write_entries")
        super().write_entries(path, start, entries)

    def write_value(self, path, value):
        self._fault("write_value")
        super().write_value(path, value)

    def set_attrs(self, path, attrs):
        self._fault("set_attrs")
        super().set_attrs(path, attrs)

    def sync(self, durable=False):
        self._fault("sync")
        super().sync(durable)

    def close(self):
        super().close()  # the file is closed all the same, as netCDF-C does
        self._fault("close")


def entry(i: int) -> np.ndarray:
    return np.full(ENTRY, float(i))


@pytest.fixture(autouse=True)
def _quiet_writer_log(caplog):
    # The writer logs each failure at ERROR; here failures are the point.
    caplog.set_level(logging.CRITICAL, logger="writebehind")


def failed_store(path, fail_in="write_entries", acknowledged=5, unacknowledged=7):
    """A store with ``acknowledged`` entries flushed, then a fault while writing the rest."""
    driver = FaultyDriver(str(path), "w", fail_in=fail_in)
    store = StorageInterface(driver)
    for i in range(acknowledged):
        store.x.append(entry(i))
    store.flush()
    driver.arm()
    for i in range(acknowledged, acknowledged + unacknowledged):
        store.x.append(entry(i))
    return store, driver


# -- what the user sees ----------------------------------------------------------------
@pytest.mark.parametrize("fail_in", ["write_entries", "sync"])
def test_enospc_reaches_flush_as_background_write_error_with_enospc_cause(nc_path, fail_in):
    store, _ = failed_store(nc_path, fail_in)
    with pytest.raises(BackgroundWriteError) as info:
        store.flush()
    cause = info.value.__cause__
    assert isinstance(cause, OSError) and cause.errno == errno.ENOSPC
    with pytest.raises(BackgroundWriteError):
        store.close()


def test_failure_inside_a_flush_is_always_background_write_error(nc_path):
    # The flush itself fails; the caller must never see the raw OSError, whatever the
    # interleaving of the writer thread and the caller (tiny switch interval, many rounds).
    import sys

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_ in range(20):
            path = nc_path.with_name(f"r{round_}.nc")
            store, _ = failed_store(path, "sync", acknowledged=1, unacknowledged=1)
            with pytest.raises(BackgroundWriteError) as info:
                store.flush()
            assert isinstance(info.value.__cause__, OSError)
            with pytest.raises(BackgroundWriteError):
                store.close()
    finally:
        sys.setswitchinterval(old)


def test_background_write_error_names_file_path_and_operation(nc_path):
    store, _ = failed_store(nc_path)
    with pytest.raises(BackgroundWriteError) as info:
        store.flush()
    error = info.value
    assert error.path == "x" and error.operation == "append"
    assert str(nc_path) in str(error) and "'x'" in str(error)
    with pytest.raises(BackgroundWriteError):
        store.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.x.append(entry(0)),
        lambda s: s.y.write(1.0),
        lambda s: s.x.write(entry(0), at_index=0),
        lambda s: s.x.read(),
        lambda s: s.x.read_metadata(),
        lambda s: s.add_metadata("a", 1),
        lambda s: s.flush(durable=True),
    ],
    ids=["append", "write", "write-at-index", "read", "read_metadata", "metadata", "flush"],
)
def test_every_call_after_a_failure_raises_background_write_error(nc_path, call):
    store, _ = failed_store(nc_path)
    with pytest.raises(BackgroundWriteError):
        store.flush()
    with pytest.raises(BackgroundWriteError) as info:
        call(store)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(BackgroundWriteError):
        store.close()


def test_handle_committed_raises_background_write_error(nc_path):
    driver = FaultyDriver(str(nc_path), "w")
    store = StorageInterface(driver)
    driver.arm()
    handle = store.x.append(entry(0))
    with pytest.raises(BackgroundWriteError):
        handle.committed()
    assert not handle.is_committed()
    with pytest.raises(BackgroundWriteError):
        store.close()


def test_close_after_a_failure_raises_once_then_is_closed(nc_path):
    store, driver = failed_store(nc_path)
    with pytest.raises(BackgroundWriteError):
        store.close()
    assert store.closed and not driver.is_open
    store.close()  # closing again does nothing
    with pytest.raises((BackgroundWriteError, StoreClosedError)):
        store.x.append(entry(0))


def test_failure_of_the_close_itself_raises_background_write_error(nc_path):
    store, _ = failed_store(nc_path, "close", unacknowledged=3)
    with pytest.raises(BackgroundWriteError) as info:
        store.close()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.operation == "close"
    assert store.closed


def test_with_block_propagates_the_users_exception_and_notes_the_failure(nc_path):
    driver = FaultyDriver(str(nc_path), "w")
    with pytest.raises(KeyError) as info, StorageInterface(driver) as store:
        driver.arm()
        store.x.append(entry(0))
        raise KeyError("the user's own error")
    assert any("BackgroundWriteError" in note for note in info.value.__notes__)


def test_producer_blocked_by_backpressure_is_released_by_the_failure(nc_path):
    driver = FaultyDriver(str(nc_path), "w")
    driver.block = True  # the writer sits in write_entries until released, then fails
    store = StorageInterface(driver, max_pending_bytes=4 * ENTRY * 8)
    store.x.append(entry(0))
    store.flush()
    driver.arm()
    outcome: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(10_000):  # far beyond max_pending_bytes: must block
                store.x.append(entry(i))
        except BaseException as exc:
            outcome.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    assert driver.entered.wait(10)
    time.sleep(0.05)  # the producer is now waiting for room (or will be)
    driver.release.set()
    producer.join(20)
    assert not producer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], BackgroundWriteError)
    with pytest.raises(BackgroundWriteError):
        store.close()


# -- what is kept ----------------------------------------------------------------------
@pytest.mark.parametrize("fail_in", ["write_entries", "sync", "set_attrs"])
def test_entries_flushed_before_the_failure_are_readable_after_reopening(nc_path, fail_in):
    store, _ = failed_store(nc_path, fail_in, acknowledged=5)
    with pytest.raises(BackgroundWriteError):
        store.close()
    with writebehind.open(nc_path, "r") as again:
        got = again.x.read()
    assert len(got) >= 5
    np.testing.assert_array_equal(got[:5], [entry(i) for i in range(5)])


@pytest.mark.parametrize("fail_in", ["write_entries", "sync", "set_attrs"])
def test_reopened_file_holds_no_entry_that_was_not_written(nc_path, fail_in):
    # Entries the failure kept from the disk must not come back as zeros or fill values.
    store, _ = failed_store(nc_path, fail_in, acknowledged=5, unacknowledged=7)
    with pytest.raises(BackgroundWriteError):
        store.close()
    with writebehind.open(nc_path, "r") as again:
        got = again.x.read()
    np.testing.assert_array_equal(got, [entry(i) for i in range(len(got))])


def test_fixed_value_written_before_the_failure_is_kept(nc_path):
    driver = FaultyDriver(str(nc_path), "w", fail_in="write_value")
    store = StorageInterface(driver)
    store.box.write(np.eye(3))
    store.flush()
    driver.arm()
    store.box.write(np.zeros((3, 3)))
    with pytest.raises(BackgroundWriteError):
        store.close()
    with writebehind.open(nc_path, "r") as again:
        np.testing.assert_array_equal(again.box.read(), np.eye(3))


def test_reopening_after_a_failure_continues_the_variable(nc_path):
    store, _ = failed_store(nc_path, acknowledged=5)
    with pytest.raises(BackgroundWriteError):
        store.close()
    with writebehind.open(nc_path, "a") as again:
        start = len(again.x)
        again.x.append(entry(start))
    with writebehind.open(nc_path, "r") as final:
        got = final.x.read()
    assert len(got) == start + 1
    np.testing.assert_array_equal(got, [entry(i) for i in range(start + 1)])


def test_stats_report_the_failure(nc_path):
    store, _ = failed_store(nc_path)
    with pytest.raises(BackgroundWriteError):
        store.flush()
    assert store.stats().failed
    with pytest.raises(BackgroundWriteError):
        store.close()


def test_a_failure_in_one_store_leaves_other_stores_working(tmp_path):
    bad, _ = failed_store(tmp_path / "bad.nc")
    with StorageInterface(NetCDFIODriver(str(tmp_path / "good.nc"), "w")) as good:
        with pytest.raises(BackgroundWriteError):
            bad.flush()
        for i in range(10):
            good.x.append(entry(i))
        good.flush()
        assert len(good.x.read()) == 10
    with pytest.raises(BackgroundWriteError):
        bad.close()
