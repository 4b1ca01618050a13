"""The async store under concurrency: cancellation, backpressure, many tasks, background
errors, and sync and async stores in one program (issue 3), on asyncio and trio.

A ``GatedDriver`` holds the writer thread inside a chosen driver call until the test opens
its gate, so "cancelled in the middle of a read" or "waiting under backpressure" is a state
the test reaches for certain, not a race it hopes to win.
"""

from __future__ import annotations

import logging
import threading

import anyio
import numpy as np
import pytest

import writebehind
from writebehind import (
    BackgroundWriteError,
    NetCDFBackend,
    StoreClosedError,
    open_async,
)

pytestmark = pytest.mark.anyio

GATE_TIMEOUT = 10.0  # a failing test opens no gate: the writer gives up instead of hanging


class GatedDriver(NetCDFBackend):
    """Blocks the writer in the calls named in ``block`` until ``gate`` is set."""

    def __init__(self, file_name: str, mode: str | None = None, *, block: tuple[str, ...] = ()):
        super().__init__(file_name, mode)
        self.block = set(block)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def _hold(self, call: str) -> None:
        if call in self.block and not self.gate.is_set():
            self.entered.set()
            if not self.gate.wait(GATE_TIMEOUT):
                raise TimeoutError(f"the test never opened the gate of {call}")

    def read_entries(self, path, start, stop, step=1):
        self._hold("read_entries")
        return super().read_entries(path, start, stop, step)

    def write_entries(self, path, start, entries):
        self._hold("write_entries")
        super().write_entries(path, start, entries)

    def sync(self, durable=False):
        self._hold("sync")
        super().sync(durable)


class FailingDriver(NetCDFBackend):
    """Writing entries of the variable ``bad`` fails on the writer thread."""

    def write_entries(self, path, start, entries):
        if path == "bad":
            raise OSError(28, "No space left on device")
        super().write_entries(path, start, entries)


async def wait_until_entered(driver: GatedDriver) -> None:
    assert await anyio.to_thread.run_sync(driver.entered.wait, GATE_TIMEOUT)


# -- cancellation --------------------------------------------------------------------------
async def test_cancelling_a_read_in_the_middle_leaves_the_store_usable(nc_path):
    driver = GatedDriver(str(nc_path), "w", block=("read_entries",))
    async with writebehind.AsyncStorageInterface(driver) as store:
        for i in range(5):
            await store.x.append(i)
        finished = []
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                finished.append(await store.x.read())

            tg.start_soon(reader)
            await wait_until_entered(driver)  # the writer is inside the read
            tg.cancel_scope.cancel()
        assert finished == []
        driver.gate.set()
        await store.x.append(5)
        assert (await store.x.read()).tolist() == [0, 1, 2, 3, 4, 5]


async def test_cancelling_a_flush_in_the_middle_leaves_the_store_usable(nc_path):
    driver = GatedDriver(str(nc_path), "w", block=("sync",))
    async with writebehind.AsyncStorageInterface(driver) as store:
        await store.x.append(1)
        with anyio.CancelScope() as scope:

            async def cancel_once_inside() -> None:
                await wait_until_entered(driver)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_inside)
                await store.flush()
        assert scope.cancelled_caught
        driver.gate.set()
        await store.x.append(2)
        await store.flush(durable=True)
        assert (await store.x.read()).tolist() == [1, 2]


async def test_append_cancelled_under_backpressure_appends_nothing(nc_path):
    driver = GatedDriver(str(nc_path), "w", block=("write_entries",))
    store = writebehind.AsyncStorageInterface(driver, max_pending_bytes=1000)
    async with store:
        await store.x.append(np.zeros(100))  # 800 bytes pending: accepted
        enqueued = store.stats().operations_enqueued
        returned = []
        async with anyio.create_task_group() as tg:

            async def appender() -> None:
                returned.append(await store.x.append(np.ones(100)))

            tg.start_soon(appender)
            await wait_until_entered(driver)  # the writer is stuck: no room will come
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        assert returned == []
        assert store.stats().operations_enqueued == enqueued
        assert len(store.x) == 1
        driver.gate.set()
        await store.x.append(np.full(100, 2.0))
        np.testing.assert_array_equal((await store.x.read())[:, 0], [0.0, 2.0])


async def test_write_timed_out_under_backpressure_writes_nothing(nc_path):
    driver = GatedDriver(str(nc_path), "w", block=("write_entries",))
    store = writebehind.AsyncStorageInterface(driver, max_pending_bytes=1000)
    async with store:
        await store.x.append(np.zeros(100))  # 800 bytes pending, held by the shut gate
        with anyio.move_on_after(0.05) as scope:  # so this wait for room cannot end
            await store.x.write(np.full(100, 9.0), at_index=0)
        assert scope.cancelled_caught
        driver.gate.set()
        np.testing.assert_array_equal((await store.x.read())[:, 0], [0.0])


async def test_backpressure_on_the_async_store_is_counted_and_warned_about(nc_path, caplog):
    driver = GatedDriver(str(nc_path), "w", block=("write_entries",))
    store = writebehind.AsyncStorageInterface(driver, max_pending_bytes=1000)
    caplog.set_level(logging.WARNING, logger="writebehind")
    async with store:
        await store.x.append(np.zeros(100))  # 800 bytes pending, held by the shut gate
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.x.append, np.ones(100))  # waits for room
            await wait_until_entered(driver)
            with anyio.fail_after(GATE_TIMEOUT):  # the wait for room runs on a worker thread
                while store.stats().backpressure_waits == 0:
                    await anyio.sleep(0.001)
            driver.gate.set()
        assert len(store.x) == 2
        assert store.stats().backpressure_waits == 1
    warnings = [r for r in caplog.records if "backpressure engaged" in r.getMessage()]
    assert len(warnings) == 1 and "max_pending_bytes=1000" in warnings[0].getMessage()


@pytest.mark.parametrize("first", ["write", "append"])
async def test_first_value_cancelled_under_backpressure_leaves_no_variable(nc_path, first):
    driver = GatedDriver(str(nc_path), "w", block=("write_entries",))
    store = writebehind.AsyncStorageInterface(driver, max_pending_bytes=1000)
    async with store:
        await store.x.append(np.zeros(100))  # 800 bytes pending, held by the shut gate
        with anyio.move_on_after(0.05) as scope:
            await getattr(store.y, first)(np.arange(100.0))
        assert scope.cancelled_caught
        assert "y" not in store
        driver.gate.set()
    with writebehind.open(nc_path, "r") as sync_store:
        assert list(sync_store) == ["x"]


async def test_append_under_backpressure_waits_for_the_writer_and_the_loop_keeps_running(
    nc_path,
):
    driver = GatedDriver(str(nc_path), "w", block=("write_entries",))
    store = writebehind.AsyncStorageInterface(driver, max_pending_bytes=1000)
    async with store:
        await store.x.append(np.zeros(100))
        events = []
        async with anyio.create_task_group() as tg:

            async def appender() -> None:
                await store.x.append(np.ones(100))
                events.append("appended")

            async def other_task() -> None:
                await wait_until_entered(driver)
                await anyio.wait_all_tasks_blocked()
                events.append("other task ran")
                driver.gate.set()

            tg.start_soon(appender)
            tg.start_soon(other_task)
        assert events == ["other task ran", "appended"]
        np.testing.assert_array_equal((await store.x.read())[:, 0], [0.0, 1.0])


async def test_backpressure_waits_of_the_async_store_are_counted_in_stats(nc_path):
    driver = GatedDriver(str(nc_path), "w", block=("write_entries",))
    store = writebehind.AsyncStorageInterface(driver, max_pending_bytes=1000)
    async with store:
        await store.x.append(np.zeros(100))
        assert store.stats().backpressure_waits == 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.x.append, np.ones(100))
            await wait_until_entered(driver)
            driver.gate.set()
        assert store.stats().backpressure_waits >= 1


async def test_append_that_returned_is_written_even_if_its_task_is_cancelled_later(nc_path):
    async with open_async(nc_path, "w") as store, anyio.create_task_group() as tg:

        async def appender() -> None:
            await store.x.append(42)
            await anyio.sleep_forever()

        tg.start_soon(appender)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    with writebehind.open(nc_path, "r") as sync_store:
        assert sync_store.x.read().tolist() == [42]


async def test_aclose_cancelled_while_waiting_still_closes_and_writes_everything(nc_path):
    driver = GatedDriver(str(nc_path), "w", block=("sync",))
    store = writebehind.AsyncStorageInterface(driver)
    await store
    await store.x.append(7)
    with anyio.CancelScope() as scope:

        async def cancel_once_inside() -> None:
            await wait_until_entered(driver)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_inside)
            await store.aclose()
    assert scope.cancelled_caught
    assert store.closed
    with pytest.raises(StoreClosedError):
        await store.x.append(8)
    driver.gate.set()
    await store.aclose()  # waits for the close the cancelled call started
    with writebehind.open(nc_path, "r") as sync_store:
        assert sync_store.x.read().tolist() == [7]


# -- many tasks ----------------------------------------------------------------------------
async def test_many_tasks_sharing_a_store_each_keep_their_own_order(nc_path):
    tasks, steps = 6, 60
    # A small bound makes tasks suspend under backpressure in the middle of their appends.
    async with open_async(nc_path, "w", max_pending_bytes=256) as store:

        async def producer(task: int) -> None:
            for step in range(steps):
                await store.log.append(np.array([task, step]))
                await store[f"task{task}"].append(step)
                if step % 5 == task % 5:
                    await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            for task in range(tasks):
                tg.start_soon(producer, task)
        log = await store.log.read()
        per_task = {task: (await store[f"task{task}"].read()).tolist() for task in range(tasks)}
    assert len(log) == tasks * steps
    assert not np.all(np.diff(log[:, 0]) >= 0), "the tasks did not interleave"
    for task in range(tasks):
        assert log[log[:, 0] == task, 1].tolist() == list(range(steps))
        assert per_task[task] == list(range(steps))


# -- background errors ---------------------------------------------------------------------
async def test_background_failure_raises_background_write_error_on_the_next_call(nc_path):
    store = await writebehind.AsyncStorageInterface(FailingDriver(str(nc_path), "w"))
    await store.bad.append(1.0)
    with pytest.raises(BackgroundWriteError) as info:
        await store.flush()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.path == "bad"
    with pytest.raises(BackgroundWriteError):
        await store.good.append(1.0)
    with pytest.raises(BackgroundWriteError):
        await store.aclose()


async def test_background_failure_never_awaited_is_raised_by_aclose(nc_path):
    store = await writebehind.AsyncStorageInterface(FailingDriver(str(nc_path), "w"))
    await store.bad.append(1.0)
    with pytest.raises(BackgroundWriteError, match="No space left"):
        await store.aclose()
    assert store.closed


async def test_aclose_after_an_aclose_that_raised_does_nothing(nc_path):
    store = await writebehind.AsyncStorageInterface(FailingDriver(str(nc_path), "w"))
    await store.bad.append(1.0)
    with pytest.raises(BackgroundWriteError):
        await store.aclose()
    await store.aclose()
    assert store.closed


async def test_committed_raises_background_write_error_if_the_store_failed(nc_path):
    store = await writebehind.AsyncStorageInterface(FailingDriver(str(nc_path), "w"))
    handle = await store.bad.append(1.0)
    with pytest.raises(BackgroundWriteError):
        await handle.committed()
    with pytest.raises(BackgroundWriteError):
        await store.aclose()


# -- sync and async in one program ----------------------------------------------------------
async def test_sync_store_works_inside_a_running_loop(tmp_path):
    with writebehind.open(tmp_path / "sync.nc", "w") as store:
        store.x.append(1)
        store.x.append(2)
        store.flush(durable=True)
        assert store.x.read().tolist() == [1, 2]


async def test_sync_and_async_stores_on_different_files_in_one_program(tmp_path):
    with writebehind.open(tmp_path / "sync.nc", "w") as sync_store:
        async with open_async(tmp_path / "async.nc", "w") as async_store:
            for i in range(20):
                sync_store.x.append(i)
                await async_store.x.append(-i)
            assert (await async_store.x.read()).tolist() == [-i for i in range(20)]
        assert sync_store.x.read().tolist() == list(range(20))
    with writebehind.open(tmp_path / "async.nc", "r") as store:
        assert store.x.read().tolist() == [-i for i in range(20)]


async def test_sync_store_used_from_a_worker_thread_while_the_async_store_works(tmp_path):
    def sync_job() -> list[int]:
        with writebehind.open(tmp_path / "sync.nc", "w") as store:
            for i in range(50):
                store.x.append(i)
            return store.x.read().tolist()

    async with open_async(tmp_path / "async.nc", "w") as async_store:
        async with anyio.create_task_group() as tg:
            result: list[list[int]] = []

            async def run_sync_job() -> None:
                result.append(await anyio.to_thread.run_sync(sync_job))

            tg.start_soon(run_sync_job)
            for i in range(50):
                await async_store.y.append(i)
        assert (await async_store.y.read()).tolist() == list(range(50))
    assert result == [list(range(50))]
