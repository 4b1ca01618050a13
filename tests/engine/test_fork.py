"""A fork with a store open: the child never hangs and never writes the parent's file.

Each test runs a small script in a fresh interpreter (a forked child must be able to exit
the normal way, which pytest's own process cannot do). The script forks and waits for its
child with a deadline, killing it past that: a child that hangs fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

#: Seconds a forked child gets to finish; it needs well under one.
CHILD_DEADLINE = 20

_PRELUDE = f"""
import os, sys, time, warnings
import numpy as np
import writebehind
from writebehind import ForkedStoreError

# Python 3.12+ warns at every fork of a process with threads (a store's writer is one).
warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)

def wait_for(pid):
    # The child's exit status; a child still running after the deadline is killed.
    deadline = time.monotonic() + {CHILD_DEADLINE}
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


def run(script: str, *args: str) -> str:
    """Run ``script`` after the prelude; its stdout. It must succeed, in time."""
    source = _PRELUDE + textwrap.dedent(script)
    process = subprocess.Popen(
        [sys.executable, "-c", source, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a timeout kills the forked child too
    )
    try:
        out, err = process.communicate(timeout=2 * CHILD_DEADLINE + 30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the script hung")
    assert process.returncode == 0, f"exit status {process.returncode}\n{out}\n{err}"
    return out


@pytest.mark.parametrize("touched", [False, True], ids=["untouched", "used"])
@pytest.mark.parametrize("how", ["sys.exit", "end of script", "exception", "os._exit"])
def test_child_exits_at_once(nc_path: Path, how: str, touched: bool) -> None:
    out = run(
        """
        how, touched = sys.argv[2], sys.argv[3] == "True"
        store = writebehind.open(sys.argv[1], "w")
        for i in range(100):
            store.x.append(i)
        pid = os.fork()
        if pid == 0:
            if touched:
                try:
                    store.x.append(100)
                except ForkedStoreError:
                    pass
            if how == "sys.exit":
                sys.exit(7)
            if how == "os._exit":
                os._exit(7)
            if how == "exception":
                raise ValueError("the child fails")  # exit status 1
            # "end of script": the child runs on to the end of the script (status 0)
        else:
            print("child:", wait_for(pid))
            store.close()
        """,
        str(nc_path),
        how,
        str(touched),
    )
    status = {"end of script": 0, "exception": 1}.get(how, 7)
    assert out.splitlines() == [f"child: {status}"]


def test_child_exit_leaves_the_parents_file_untouched(nc_path: Path) -> None:
    out = run(
        """
        import hashlib
        def digest():
            with open(sys.argv[1], "rb") as file:
                return hashlib.sha256(file.read()).hexdigest()

        store = writebehind.open(sys.argv[1], "w")
        store.add_metadata("title", "parent")
        for i in range(1000):
            store.x.append(np.full(10, i))
        store.flush()
        for i in range(1000, 2000):
            store.x.append(np.full(10, i))
        store.x.read()  # everything written, not synced: HDF5 holds unwritten metadata
        before = digest()
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # an exit that runs every exit hook, HDF5's included
        print("child:", wait_for(pid))
        print("unchanged:", digest() == before)
        store.close()
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: 0", "unchanged: True"]


OPERATIONS = {
    "append": "store.x.append(1)",
    "append to a new variable": "store.y.append(1)",
    "write": "store.w.write(np.arange(3))",
    "write at index": "store.x.write(5, at_index=0)",
    "read": "store.x.read()",
    "read metadata": "store.read_metadata()",
    "add_metadata": "store.add_metadata('a', 1)",
    "flush": "store.flush()",
    "close": "store.close()",
    "committed": "handle.committed()",
    "with block": "with store: pass",
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_call_in_the_child_raises_forked_store_error(nc_path: Path, operation: str) -> None:
    out = run(
        """
        store = writebehind.open(sys.argv[1], "w")
        for i in range(10):
            handle = store.x.append(i)
        pid = os.fork()
        if pid == 0:
            try:
                exec(sys.argv[2])
            except ForkedStoreError as error:
                message = str(error)
                ok = str(os.getppid()) in message and "fork" in message and sys.argv[1] in message
                os._exit(0 if ok else 2)
            os._exit(1)
        print("child:", wait_for(pid))
        store.close()
        """,
        str(nc_path),
        OPERATIONS[operation],
    )
    assert out.splitlines() == ["child: 0"]


def test_child_sees_the_store_as_forked(nc_path: Path) -> None:
    out = run(
        """
        store = writebehind.open(sys.argv[1], "w")
        pid = os.fork()
        if pid == 0:
            os._exit(0 if store.closed and "(forked)" in repr(store) else 1)
        print("child:", wait_for(pid), repr(store).endswith("(open)>"))
        store.close()
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: 0 True"]


def test_store_closed_before_the_fork_stays_closed_in_the_child(nc_path: Path) -> None:
    out = run(
        """
        store = writebehind.open(sys.argv[1], "w")
        store.x.append(0)
        store.close()
        pid = os.fork()
        if pid == 0:
            store.close()  # again: allowed
            try:
                store.x.append(1)
            except writebehind.StoreClosedError:
                os._exit(0)
            os._exit(1)
        print("child:", wait_for(pid))
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: 0"]


def test_child_cannot_open_the_file_the_parent_has_open(nc_path: Path) -> None:
    out = run(
        """
        store = writebehind.open(sys.argv[1], "w")
        store.x.append(0)
        store.flush()
        pid = os.fork()
        if pid == 0:
            refused = 0
            for mode in ("r", "a", "w"):
                try:
                    writebehind.open(sys.argv[1], mode)
                except writebehind.RecoveryError:
                    refused += 1
            os._exit(0 if refused == 3 else 1)
        print("child:", wait_for(pid))
        store.x.append(1)
        store.close()
        with writebehind.open(sys.argv[1], "r") as reopened:
            print(reopened.x.read().tolist())
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: 0", "[0, 1]"]


def test_forked_store_error_is_a_writebehind_error_and_a_runtime_error() -> None:
    from writebehind import ForkedStoreError, WriteBehindError

    assert issubclass(ForkedStoreError, WriteBehindError)
    assert issubclass(ForkedStoreError, RuntimeError)


def test_parent_keeps_writing_through_forks(nc_path: Path) -> None:
    out = run(
        """
        import threading
        store = writebehind.open(sys.argv[1], "w")
        stop = threading.Event()
        count = 0

        def produce():
            global count
            while not stop.is_set():
                store.x.append(count)
                store.frame.append(np.full(1000, count, dtype=np.float32))
                count += 1

        producer = threading.Thread(target=produce)
        producer.start()
        statuses = []
        for n in range(5):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:  # a child that tries to write, then exits the normal way
                try:
                    store.x.append(-1)
                except ForkedStoreError:
                    sys.exit(0)
                sys.exit(1)
            statuses.append(wait_for(pid))
            store.flush()
        stop.set()
        producer.join()
        store.add_metadata("count", count)
        store.close()
        print("children:", statuses)
        with writebehind.open(sys.argv[1], "r") as reopened:
            x = reopened.x.read()
            frames = reopened.frame.read()
            ok = (
                x.tolist() == list(range(count))
                and frames.shape == (count, 1000)
                and (frames == np.arange(count)[:, None]).all()
                and reopened.read_metadata() == {"count": count}
            )
        print("intact:", ok, count > 0)
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["children: [0, 0, 0, 0, 0]", "intact: True True"]


def test_multiprocessing_fork_child_gets_forked_store_error(nc_path: Path) -> None:
    out = run(
        """
        import multiprocessing

        def child(store, queue):
            try:
                store.x.append(1)
            except ForkedStoreError as error:
                queue.put(type(error).__name__)
            else:
                queue.put("no error")

        if __name__ == "__main__":
            context = multiprocessing.get_context("fork")
            store = writebehind.open(sys.argv[1], "w")
            store.x.append(0)
            queue = context.Queue()
            process = context.Process(target=child, args=(store, queue))
            process.start()
            process.join(timeout=20)
            print("child:", queue.get(timeout=1), process.exitcode)
            store.x.append(1)
            store.close()
            with writebehind.open(sys.argv[1], "r") as reopened:
                print(reopened.x.read().tolist())
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: ForkedStoreError 0", "[0, 1]"]


def test_multiprocessing_fork_children_that_ignore_the_store_finish(nc_path: Path) -> None:
    out = run(
        """
        import multiprocessing

        def square(n):
            return n * n

        if __name__ == "__main__":
            store = writebehind.open(sys.argv[1], "w")
            for i in range(1000):
                store.x.append(i)
            with multiprocessing.get_context("fork").Pool(2) as pool:
                result = pool.map_async(square, range(10)).get(timeout=20)
            store.close()
            print(sum(result))
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["285"]


def test_async_store_in_child_raises_forked_store_error(nc_path: Path, anyio_backend: str) -> None:
    # anyio_backend (conftest.py) gives the event loops; the script runs its own, in a child.
    out = run(
        """
        import anyio

        async def enter(store):
            async with store:
                pass

        async def main():
            async with writebehind.open_async(sys.argv[1], "w") as store:
                await store.x.append(0)
                pid = os.fork()
                if pid == 0:
                    raised = []
                    for call in (
                        lambda: store.x.append(1),
                        lambda: store.x.read(),
                        lambda: store.flush(),
                        lambda: store.aclose(),
                        lambda: enter(store),
                    ):
                        try:
                            await call()
                        except ForkedStoreError:
                            raised.append(True)
                    os._exit(0 if raised == [True] * 5 else 1)
                print("child:", wait_for(pid))
                await store.x.append(1)
            async with writebehind.open_async(sys.argv[1], "r") as store:
                print((await store.x.read()).tolist())

        anyio.run(main, backend=sys.argv[2])
        """,
        str(nc_path),
        anyio_backend,
    )
    assert out.splitlines() == ["child: 0", "[0, 1]"]


_SLOW_WRITER = """
import threading
from writebehind.drivers.netcdf import LIBRARY_LOCK

inside = threading.Event()

class SlowDriver(writebehind.NetCDFBackend):
    def write_entries(self, path, start, entries):
        inside.set()
        time.sleep(float(sys.argv[2]))  # the library lock is held meanwhile
        super().write_entries(path, start, entries)

def fork_while_the_writer_is_in_the_library():
    # Fork while the parent's writer is inside write_entries; the child checks that it
    # has the library to itself: its lock is free, and a store of its own works.
    store = writebehind.StorageInterface(SlowDriver(sys.argv[1] + "/parent.nc", "w"))
    store.x.append(0)
    inside.wait(timeout=10)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        free = LIBRARY_LOCK.acquire(timeout=5)
        if free:
            LIBRARY_LOCK.release()
        with writebehind.open(sys.argv[1] + "/child.nc", "w") as own:
            own.y.append(1)
            ok = free and own.y.read().tolist() == [1]
        os._exit(0 if ok else 1)
    forked_after = time.monotonic() - started
    print("child:", wait_for(pid))
    store.close()
    return forked_after
"""


def test_fork_waits_for_the_writer_to_leave_the_library(tmp_path: Path) -> None:
    out = run(
        _SLOW_WRITER
        + textwrap.dedent(
            """
        forked_after = fork_while_the_writer_is_in_the_library()
        print("waited:", forked_after > 0.2)
        """
        ),
        str(tmp_path),
        "0.5",
    )
    assert out.splitlines() == ["child: 0", "waited: True"]


def test_fork_waits_for_the_library_only_so_long(tmp_path: Path) -> None:
    out = run(
        _SLOW_WRITER
        + textwrap.dedent(
            """
        import writebehind._fork
        writebehind._fork.FORK_WAIT_SECONDS = 0.1
        forked_after = fork_while_the_writer_is_in_the_library()
        print("waited no longer:", forked_after < 2)
        """
        ),
        str(tmp_path),
        "4",
    )
    assert out.splitlines() == ["child: 0", "waited no longer: True"]


def test_child_opens_the_parents_file_once_the_parent_closed_it(nc_path: Path) -> None:
    out = run(
        """
        store = writebehind.open(sys.argv[1], "w")
        for i in range(10):
            store.x.append(i)
        store.x.read()
        closed_r, closed_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.read(closed_r, 1)
            with writebehind.open(sys.argv[1], "a") as reopened:
                reopened.x.append(10)
            os._exit(0)
        store.x.append(-1)  # the parent goes on: the child's file is the parent's, as left
        store.close()
        os.write(closed_w, b"x")
        print("child:", wait_for(pid))
        with writebehind.open(sys.argv[1], "r") as reopened:
            print(reopened.x.read().tolist())
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: 0", str([*range(10), -1, 10])]


def test_child_forked_in_the_middle_of_a_write_cannot_reopen_the_parents_file(
    tmp_path: Path,
) -> None:
    out = run(
        _SLOW_WRITER
        + textwrap.dedent(
            """
            import errno
            import writebehind._fork
            writebehind._fork.FORK_WAIT_SECONDS = 0.1
            store = writebehind.StorageInterface(SlowDriver(sys.argv[1] + "/parent.nc", "w"))
            store.x.append(0)
            inside.wait(timeout=10)
            closed_r, closed_w = os.pipe()
            pid = os.fork()  # the fork does not wait long enough for the write to end
            if pid == 0:
                os.read(closed_r, 1)
                try:
                    writebehind.open(sys.argv[1] + "/parent.nc", "a")
                except OSError as error:
                    os._exit(0 if error.errno == errno.EBUSY else 2)
                os._exit(1)
            store.close()
            os.write(closed_w, b"x")
            print("child:", wait_for(pid))
            """
        ),
        str(tmp_path),
        "1",
    )
    assert out.splitlines() == ["child: 0"]


def test_child_does_not_wait_for_an_engine_lock_held_at_the_fork(nc_path: Path) -> None:
    out = run(
        """
        import threading

        store = writebehind.open(sys.argv[1], "w")
        store.x.append(0)
        held = threading.Event()

        def hold():
            with store._core.engine.lock:  # as the writer does between two operations
                held.set()
                time.sleep(0.5)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(timeout=10)
        pid = os.fork()
        if pid == 0:
            try:
                store.x.append(1)
            except ForkedStoreError:
                os._exit(0)
            os._exit(1)
        print("child:", wait_for(pid))
        holder.join()
        store.close()
        """,
        str(nc_path),
    )
    assert out.splitlines() == ["child: 0"]
