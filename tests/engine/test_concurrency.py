"""Concurrency stress: many threads on one store, several stores at once (issue 7, point 7).

Every producer appends entries that name it and count up, so the file itself shows whether
anything was lost, duplicated or reordered. Every test has a timeout: a deadlock fails it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import writebehind
from writebehind import StorageInterface, StoreClosedError

pytestmark = pytest.mark.timeout(60)

THREADS = 8
PER_THREAD = 1500


def run_threads(target, count: int = THREADS) -> list[BaseException]:
    """Run ``target(k)`` on ``count`` threads released together; the exceptions they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(k: int) -> None:
        try:
            start.wait()
            target(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(50)
    assert not any(thread.is_alive() for thread in threads), "a producer is stuck"
    return errors


def assert_each_producer_complete_and_in_order(entries: np.ndarray, count: int, per: int):
    """``entries`` rows are ``(producer, seq)``: each producer's seqs must be 0..per-1 in order."""
    assert entries.shape == (count * per, 2)
    for producer in range(count):
        seqs = entries[entries[:, 0] == producer, 1]
        np.testing.assert_array_equal(seqs, np.arange(per), err_msg=f"producer {producer}")


def test_threads_appending_to_one_variable_lose_nothing_and_keep_their_order(store):
    def produce(k: int) -> None:
        for i in range(PER_THREAD):
            store.log.append(np.array([k, i], dtype=np.int64))

    assert run_threads(produce) == []
    assert len(store.log) == THREADS * PER_THREAD
    assert_each_producer_complete_and_in_order(store.log.read(), THREADS, PER_THREAD)


def test_threads_on_their_own_variables_with_reads_and_flushes_mixed_in(store):
    def produce(k: int) -> None:
        node = store[f"producer{k}/values"]
        for i in range(PER_THREAD):
            node.append(float(i))
            if i % 300 == 299:
                got = node.read(slice(-10, None))
                np.testing.assert_array_equal(got, np.arange(i - 9, i + 1, dtype=float))
                store.flush()

    assert run_threads(produce) == []
    for k in range(THREADS):
        np.testing.assert_array_equal(store[f"producer{k}/values"].read(), np.arange(PER_THREAD))


def test_threads_creating_the_same_variable_at_once_make_one_variable(store):
    def produce(k: int) -> None:
        for i in range(50):
            store.a.b.shared.append(np.array([k, i], dtype=np.int64))

    assert run_threads(produce) == []
    assert list(store) == ["a"] and list(store.a) == ["b"] and list(store.a.b) == ["shared"]
    assert_each_producer_complete_and_in_order(store.a.b.shared.read(), THREADS, 50)


def test_threads_writing_metadata_and_dicts_at_once(store):
    def produce(k: int) -> None:
        for i in range(100):
            store.checkpoints.append({"producer": k, "seq": i, "state": np.arange(3) + i})
            store[f"group{k}"].add_metadata("last", i)

    assert run_threads(produce) == []
    records = store.checkpoints.read()
    assert len(records) == THREADS * 100
    for k in range(THREADS):
        mine = [r for r in records if r["producer"] == k]
        assert [r["seq"] for r in mine] == list(range(100))
        assert all(np.array_equal(r["state"], np.arange(3) + r["seq"]) for r in mine)
    store.close()
    with writebehind.open(store.file_name, "r") as again:
        assert all(again[f"group{k}"].read_metadata() == {"last": 99} for k in range(THREADS))


def test_readers_always_see_a_prefix_of_what_writers_appended(store):
    store.x.append(0.0)
    done = threading.Event()
    bad: list[str] = []

    def read_until_done(_: int) -> None:
        while not done.is_set():
            got = store.x.read()
            if not np.array_equal(got, np.arange(len(got), dtype=float)):
                bad.append(f"read {got[:5]}...")

    def write(_: int) -> None:
        try:
            for i in range(1, 20_000):
                store.x.append(float(i))
        finally:
            done.set()

    readers = threading.Thread(target=run_threads, args=(read_until_done, 3))
    readers.start()
    assert run_threads(write, 1) == []
    readers.join(50)
    assert bad == []
    assert len(store.x.read()) == 20_000


def test_close_racing_with_producers_keeps_every_append_that_returned(nc_path):
    store = StorageInterface(writebehind.NetCDFIODriver(str(nc_path), "w"))
    accepted = [0] * THREADS
    store.x.append(np.array([-1, -1], dtype=np.int64))

    def produce(k: int) -> None:
        if k == 0:
            store.close()
            return
        try:
            for i in range(100_000):
                store.x.append(np.array([k, i], dtype=np.int64))
                accepted[k] += 1
        except StoreClosedError:
            pass

    assert run_threads(produce) == []
    with writebehind.open(nc_path, "r") as again:
        entries = again.x.read()[1:]
    assert len(entries) == sum(accepted)
    for k in range(1, THREADS):
        np.testing.assert_array_equal(entries[entries[:, 0] == k, 1], np.arange(accepted[k]))


def test_producers_blocked_by_backpressure_all_finish(nc_path):
    with StorageInterface(
        writebehind.NetCDFIODriver(str(nc_path), "w"), max_pending_bytes=64 * 1024
    ) as store:

        def produce(k: int) -> None:
            for i in range(300):
                store[f"v{k}"].append(np.full(512, float(i)))  # 4 KiB entries

        assert run_threads(produce) == []
        for k in range(THREADS):
            np.testing.assert_array_equal(store[f"v{k}"].read()[:, 0], np.arange(300))


SEVERAL_STORES = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    import writebehind

    directory, stores, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    errors = []

    def run(k):
        try:
            with writebehind.open(f"{directory}/run{k}.nc", "w") as store:
                for i in range(rounds):
                    store.traj.positions.append(np.full((200, 3), float(i)))
                    store.traj.step.append(i)
                    store.log.append({"i": i})
                    if i % 25 == 24:
                        store.flush()
                        tail = store.traj.positions.read(slice(-2, None))
                        assert tail[-1, 0, 0] == i, (k, i)
            with writebehind.open(f"{directory}/run{k}.nc", "r") as store:
                steps = store.traj.step.read()
                assert steps.tolist() == list(range(rounds)), k
                assert store.traj.positions.read()[:, 0, 0].tolist() == list(range(rounds))
                assert [r["i"] for r in store.log.read()] == list(range(rounds))
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("errors:", errors)
    sys.exit(1 if errors else 0)
    """
)


def test_several_stores_on_several_files_at_once_in_one_process(tmp_path):
    # In a child process: netCDF-C and HDF5 are not thread-safe, and a store that let two
    # writer threads into the library at once could crash the interpreter.
    result = subprocess.run(
        [sys.executable, "-c", SEVERAL_STORES, str(tmp_path), "4", "400"],
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])


# -- async tasks and threads at once -----------------------------------------------------
@pytest.mark.anyio
async def test_many_tasks_and_threads_on_several_stores_at_once(tmp_path):
    import anyio

    tasks, steps, threads = 40, 150, 4
    sync_store = StorageInterface(writebehind.NetCDFIODriver(str(tmp_path / "sync.nc"), "w"))

    def thread_producer(k: int) -> None:
        for i in range(steps * 4):
            sync_store.log.append(np.array([k, i], dtype=np.int64))

    workers = [threading.Thread(target=thread_producer, args=(k,)) for k in range(threads)]
    async with writebehind.open_async(tmp_path / "async.nc", "w") as store:

        async def task_producer(task: int) -> None:
            for i in range(steps):
                await store.log.append(np.array([task, i], dtype=np.int64))
                if i % 50 == 49:
                    await store.flush()
                elif i % 7 == task % 7:
                    await anyio.sleep(0)

        for worker in workers:
            worker.start()
        async with anyio.create_task_group() as group:
            for task in range(tasks):
                group.start_soon(task_producer, task)
        entries = await store.log.read()
    for worker in workers:
        await anyio.to_thread.run_sync(worker.join, 30)
    sync_store.close()
    assert_each_producer_complete_and_in_order(entries, tasks, steps)
    with writebehind.open(tmp_path / "sync.nc", "r") as again:
        assert_each_producer_complete_and_in_order(again.log.read(), threads, steps * 4)


GC_ON_A_WRITER = textwrap.dedent(
    """
    import gc, sys
    import writebehind

    directory = sys.argv[1]
    a = writebehind.open(directory + "/a.nc", "w")
    a.x.write(1)
    gc.disable()
    b = writebehind.open(directory + "/b.nc", "w")
    b.x.append(2)
    cycle = [b]
    cycle.append(cycle)
    del b, cycle  # b is left to the cyclic garbage collector, and to its finalizer
    # The collection runs on a's writer thread, which holds netCDF's library lock: b's
    # finalizer must not wait there for b's writer, which needs that lock.
    a._core.engine.run("collect garbage", gc.collect)
    a.close()
    """
)


def test_store_collected_on_another_stores_writer_thread_is_closed_without_deadlock(
    tmp_path, reopen
):
    subprocess.run([sys.executable, "-c", GC_ON_A_WRITER, str(tmp_path)], check=True, timeout=30)
    with reopen(tmp_path / "b.nc") as store:
        assert store.x.read().tolist() == [2]


class SyncGatedBackend(writebehind.NetCDFBackend):
    """Holds the writer inside ``sync`` (a flush, the library lock held) until ``gate``."""

    def __init__(self, file_name: str, mode: str | None = None):
        super().__init__(file_name, mode)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail_next_sync = False

    def sync(self, durable: bool = False) -> None:
        if not self.gate.is_set():
            self.entered.set()
            if not self.gate.wait(50):
                raise TimeoutError("the test never opened the gate")
        if self.fail_next_sync:
            raise OSError(5, "Input/output error")
        super().sync(durable)


def flush_in_background(store: StorageInterface) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            store.flush()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=flush)
    thread.start()
    return thread, errors


def test_threads_create_variables_while_the_writer_is_stuck_in_a_flush(nc_path):
    backend = SyncGatedBackend(str(nc_path), "w")
    store = StorageInterface(backend)
    store.before.append(np.zeros(3))
    flusher, flush_errors = flush_in_background(store)
    assert backend.entered.wait(20)

    def create(k: int) -> None:  # new groups, new variables, each with a first entry
        for i in range(40):
            store[f"thread{k}/group{i % 4}/v{i}"].append(np.full(3, 100 * k + i))

    # Creating variables needs nothing of the writer, stuck with the file's library lock.
    assert run_threads(create, count=2) == []
    assert flusher.is_alive()  # the flush was still held the whole time
    backend.gate.set()
    flusher.join(20)
    assert flush_errors == []
    store.close()
    with writebehind.open(str(nc_path), "r") as again:
        for k in range(2):
            for i in range(40):
                got = again[f"thread{k}/group{i % 4}/v{i}"].read()
                np.testing.assert_array_equal(got, [np.full(3, 100 * k + i)])


def test_variables_created_during_a_flush_that_fails_raise_the_failure(nc_path):
    backend = SyncGatedBackend(str(nc_path), "w")
    backend.fail_next_sync = True
    store = StorageInterface(backend)
    store.before.append(np.zeros(3))
    flusher, flush_errors = flush_in_background(store)
    assert backend.entered.wait(20)
    store.during.append(np.ones(3))  # accepted: the failure is not known yet
    backend.gate.set()
    flusher.join(20)
    assert [type(e) for e in flush_errors] == [writebehind.BackgroundWriteError]
    with pytest.raises(writebehind.BackgroundWriteError):  # sticky, for new variables too
        store.after.append(np.ones(3))
    with pytest.raises(writebehind.BackgroundWriteError):
        store.close()
