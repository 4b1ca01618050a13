"""How long writebehind's writer keeps other threads of the process off the GIL.

Usage::

    .venv/bin/python -m benchmarks.gil_holds [--rounds 3] [--out FILE]

A ticker thread sleeps 1 ms at a time and records each wake-up's delay beyond the sleep,
split (Linux, ``/proc/thread-self/schedstat``) into the time it waited runnable for a CPU
(other processes: the machine) and the rest, which is the time it waited for the GIL (or
slept past its timer). While it ticks, in the same process:

- ``idle``: nothing else runs (the machine's floor);
- ``24KB appends``: the main thread appends 2,000 frames of 24 KB, flushing every 100,
  the writer writing behind; and the same with the writer held (the library lock taken
  by the main thread, so the writer waits off the GIL): the difference is the writer's;
- ``structural flush``: the main thread creates 100 variables with an entry each and
  waits on ``flush()`` (off the GIL), so the writer alone holds the GIL against the ticker.

The longest GIL wait CPython allows a thread that wants the GIL is about the switch
interval (``sys.getswitchinterval()``, 5 ms) beyond the current holder's longest stretch
in C code that keeps it: past that the holder is made to drop it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from . import workloads as w

TICK_SECONDS = 0.001


def _runnable_wait_ns() -> int:
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except OSError:  # not Linux: every delay counts as the GIL's
        return 0


def ticking(work: Callable[[], Any]) -> dict[str, Any]:
    """Run ``work`` while a ticker thread records its delays; their percentiles in µs."""
    delays: list[tuple[int, int]] = []  # (beyond the sleep, of which runnable-waiting)
    running = True

    def tick() -> None:
        while running:
            queued = _runnable_wait_ns()
            started = perf_counter_ns()
            time.sleep(TICK_SECONDS)
            late = perf_counter_ns() - started - int(TICK_SECONDS * 1e9)
            delays.append((max(0, late), _runnable_wait_ns() - queued))

    ticker = threading.Thread(target=tick, name="ticker")
    ticker.start()
    time.sleep(0.01)
    delays.clear()
    try:
        work()
    finally:
        running = False
        ticker.join()
    late = np.array([d for d, _ in delays], dtype=np.float64) / 1e3
    gil = np.array([max(0, d - q) for d, q in delays], dtype=np.float64) / 1e3

    def pct(values: np.ndarray[Any, Any]) -> dict[str, float]:
        p50, p99 = np.percentile(values, [50, 99])
        return {"p50_us": float(p50), "p99_us": float(p99), "max_us": float(values.max())}

    return {"ticks": len(delays), "late": pct(late), "gil": pct(gil)}


def scenarios(directory: str) -> dict[str, Callable[[], Any]]:
    import writebehind
    from writebehind.drivers.netcdf import LIBRARY_LOCK

    frame = w.make_frame((1000, 3))
    path = os.path.join(directory, "gil.nc")

    def idle() -> None:
        time.sleep(0.5)

    def appends(hold_writer: bool) -> Callable[[], None]:
        def run() -> None:
            store = writebehind.open(path, "w")
            node = store.traj.x
            node.append(frame)
            store.flush()
            lock = LIBRARY_LOCK if hold_writer else None
            if lock is not None:
                lock.acquire()
            try:
                for i in range(2000):
                    node.append(w.bump(frame, i))
                    if i % 100 == 99 and lock is None:
                        store.flush()
            finally:
                if lock is not None:
                    lock.release()
            store.close()
            w.remove(path)

        return run

    def structural_flush() -> None:
        with writebehind.open(path, "w") as store:
            store.data.x.append(frame)
            store.flush()
            for k in range(3):
                for i in range(100):
                    store[f"made{k}/g{i // 25}/v{i}"].append(frame)
                store.flush()
        w.remove(path)

    return {
        "idle": idle,
        "24KB appends, writer held": appends(hold_writer=True),
        "24KB appends, writer writing": appends(hold_writer=False),
        "structural flush (3 x 100 new variables)": structural_flush,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="writebehind-gil-") as directory:
        jobs = scenarios(directory)
        w.write_writebehind(os.path.join(directory, "warm.nc"), w.make_frame((1000, 3)), 2)
        for _ in range(args.rounds):
            for name, job in jobs.items():
                results.setdefault(name, []).append(ticking(job))
    print("| while | ticks | late p50 / p99 / max | GIL wait p50 / p99 / max |")
    print("|---|---|---|---|")
    for name, runs in results.items():

        def cell(kind: str, runs: list[dict[str, Any]] = runs) -> str:
            p50 = np.median([r[kind]["p50_us"] for r in runs])
            p99 = np.median([r[kind]["p99_us"] for r in runs])
            top = max(r[kind]["max_us"] for r in runs)
            return f"{p50:.0f} / {p99:.0f} / {top:.0f} µs"

        ticks = sum(r["ticks"] for r in runs)
        print(f"| {name} | {ticks} | {cell('late')} | {cell('gil')} |")
    if args.out:
        out = {
            "command": "python -m benchmarks.gil_holds " + " ".join(sys.argv[1:]),
            "switch_interval_s": sys.getswitchinterval(),
            "load_average_end": os.getloadavg(),
            "results": results,
        }
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
