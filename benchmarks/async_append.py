"""The caller's time of ``await node.append(frame)`` for a 24 KB frame on a running loop,
and of a small ``await node.read(at_index=-1)`` (the cost of waking the loop from the writer).

Usage::

    .venv/bin/python -m benchmarks.async_append [--appends 2000] [--repeats 5]

For each repeat, and for asyncio, trio and (for reference) the sync store, a fresh file gets
``--appends`` appends of a 1000x3 float64 frame (24 000 bytes) changed in place between
appends, each timed with ``perf_counter_ns``; then 200 reads of the last entry. Prints p50
and p99 per run and the median over the repeats (the append figure is the one to compare
with the 15 us target), so that a busy moment on a shared machine does not decide it.

The async reads are timed twice: as the store does it (the writer's future wakes the loop
through its thread-safe callback) and, for comparison, waiting for the same future on an
anyio worker thread (``to_thread.run_sync(future.result)``), the simple alternative.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

import writebehind

READS = 200

FRAME_SHAPE = (1000, 3)  # float64: 24 000 bytes


def _frame() -> np.ndarray[Any, Any]:
    return np.random.default_rng(0).random(FRAME_SHAPE)


def run_async(path: Path, appends: int, backend: str) -> dict[str, np.ndarray[Any, Any]]:
    async def job() -> dict[str, np.ndarray[Any, Any]]:
        latencies = np.empty(appends, dtype=np.int64)
        frame = _frame()
        async with writebehind.open_async(path, "w") as store:
            node = store.traj.positions
            for i in range(appends):
                frame[0, 0] = i
                started = perf_counter_ns()
                await node.append(frame)
                latencies[i] = perf_counter_ns() - started
            await store.flush()
            reads = np.empty(READS, dtype=np.int64)
            for i in range(READS):
                started = perf_counter_ns()
                await node.read(at_index=-1)
                reads[i] = perf_counter_ns() - started
            core = store._core
            thread_reads = np.empty(READS, dtype=np.int64)
            for i in range(READS):
                started = perf_counter_ns()
                future, decode = core.read_call(node.path, -1)
                decode(await anyio.to_thread.run_sync(core.engine.result, future))
                thread_reads[i] = perf_counter_ns() - started
        return {"append": latencies, "read": reads, "read via worker thread": thread_reads}

    return anyio.run(job, backend=backend)


def run_sync(path: Path, appends: int) -> dict[str, np.ndarray[Any, Any]]:
    latencies = np.empty(appends, dtype=np.int64)
    frame = _frame()
    with writebehind.open(path, "w") as store:
        node = store.traj.positions
        for i in range(appends):
            frame[0, 0] = i
            started = perf_counter_ns()
            node.append(frame)
            latencies[i] = perf_counter_ns() - started
        store.flush()
        reads = np.empty(READS, dtype=np.int64)
        for i in range(READS):
            started = perf_counter_ns()
            node.read(at_index=-1)
            reads[i] = perf_counter_ns() - started
    return {"append": latencies, "read": reads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    p50s: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for face in ("asyncio", "trio", "sync"):  # interleaved: noise hits every face
                path = Path(tmp) / f"{face}-{repeat}.nc"
                if face == "sync":
                    timings = run_sync(path, args.appends)
                else:
                    timings = run_async(path, args.appends, face)
                path.unlink()
                for what, latencies in timings.items():
                    p50, p99 = np.percentile(latencies, [50, 99]) / 1e3
                    p50s.setdefault((face, what), []).append(float(p50))
                    print(
                        f"repeat {repeat} {face:8s} {what:24s} "
                        f"p50 {p50:7.1f} us   p99 {p99:8.1f} us"
                    )
    print(f"\nmedian of the p50s over {args.repeats} runs:")
    for (face, what), values in p50s.items():
        print(f"  {face:8s} {what:24s} {statistics.median(values):7.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
