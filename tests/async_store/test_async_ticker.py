"""The event loop keeps running while the writer reads or writes a lot (issue 3).

A ticker task sleeps 1 ms at a time and counts its wake-ups; the test asserts that it woke up
several times *during* a 200 MB read and during the flush of a 200 MB backlog, which it could
not do if either blocked the loop. The gaps themselves (the issue asks for < 20 ms) are a
timing figure, measured by ``benchmarks/async_ticker.py``, not asserted here.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

import writebehind
from writebehind import open_async
from writebehind._core import DEFAULT_MAX_PENDING_BYTES

pytestmark = pytest.mark.anyio

BIG_BYTES = 200 * 10**6
FRAME = np.random.default_rng(0).random((100_000, 3))  # 2.4 MB
FRAMES = BIG_BYTES // FRAME.nbytes
MIN_TICKS = 3  # a blocked loop wakes the ticker at most once during the operation


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.nc"
    with writebehind.open(path, "w") as store:
        for _ in range(FRAMES):
            store.traj.positions.append(FRAME)
    return path


async def ticks_during(operation: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    """How many times a 1 ms ticker woke up while ``operation`` ran, and its result."""
    ticks = 0
    stop = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await anyio.sleep(0.001)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.005)
        before = ticks
        result = await operation()
        during = ticks - before
        stop.set()
    return during, result


async def test_the_loop_keeps_running_during_a_200_mb_read(big_file):
    async with open_async(big_file, "r") as store:
        ticks, frames = await ticks_during(store.traj.positions.read)
    assert frames.nbytes >= BIG_BYTES - FRAME.nbytes
    assert ticks >= MIN_TICKS


class HeldDriver(writebehind.NetCDFBackend):
    """Holds the writer before its first write until ``release`` is set."""

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.release = threading.Event()

    def write_entries(self, path, start, entries):
        if not self.release.wait(30):
            raise TimeoutError("the test never released the writer")
        super().write_entries(path, start, entries)


async def test_the_loop_keeps_running_during_the_flush_of_a_200_mb_backlog(nc_path):
    driver = HeldDriver(str(nc_path), "w")
    assert FRAMES * FRAME.nbytes <= DEFAULT_MAX_PENDING_BYTES  # else the appends would wait
    async with writebehind.AsyncStorageInterface(driver) as store:
        for _ in range(FRAMES):  # all of it pending: the writer is held
            await store.traj.positions.append(FRAME)
        assert store.stats().pending_bytes >= BIG_BYTES - FRAME.nbytes

        async def release_and_flush() -> None:
            driver.release.set()
            await store.flush()

        ticks, _ = await ticks_during(release_and_flush)
        assert store.stats().pending_bytes == 0
    assert ticks >= MIN_TICKS
