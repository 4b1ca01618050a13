"""How close any write-behind store can come to two of issue 4's targets on this machine.

Usage::

    .venv/bin/python -m benchmarks.floors [--repeats 7] [--json results/floors.json]

Two targets of issue 4 are not met by writebehind: the whole scalar job (open, 2000
appends, close) within 1.25x one bulk netCDF4 write of the same data, and 2.4 MB appends
within 2x (p50) and 5x (p99) a plain copy of the frame. This runs writebehind and the
*least* a write-behind store can do, each job in a fresh interpreter after a warm-up (as the
suite does), rounds rotating the order, to show where the limit lies:

- **scalar**: a minimal write-behind with no validation, handles, recovery or durability:
  netCDF4 opens the file, a writer thread starts, each call is ``with lock: buf[i] = x``
  into a preallocated array, and close writes the array in one ``var[:] = buf`` and closes
  the file. Its whole job, and writebehind's, against the bulk write (netCDF4 open, one
  write, close).
- **2.4 MB**: a minimal write-behind that copies each frame into a recycled buffer (or a
  fresh one when none is free) and queues it for a writer thread doing a bare
  ``os.write`` (no HDF5, no netCDF); p50 and p99 of the caller's time against the plain
  copy ``np.array(x, copy=True)`` dropped at once, in the same tight loop as the suite.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np

from . import workloads as w

ROOT = Path(__file__).resolve().parent.parent

SCALARS = 2000
LARGE_SHAPE = (100000, 3)
LARGE_FRAMES = 200
POOL = 16  # buffers the minimal store keeps for reuse


# -- scalar: the whole job ---------------------------------------------------------------
def minimal_scalar_job(path: str, n: int) -> dict[str, float]:
    """Open, ``n`` staged appends, close: the least a write-behind store does (seconds)."""
    import netCDF4

    t0 = perf_counter()
    dataset = netCDF4.Dataset(path, "w")
    variable = w._netcdf_variable(dataset, ())
    lock = threading.Lock()
    buffer = np.empty(n)
    closing = threading.Event()

    def writer() -> None:
        closing.wait()
        variable[:] = buffer  # the whole run in one write, at close
        dataset.close()

    thread = threading.Thread(target=writer)
    thread.start()
    t1 = perf_counter()
    x = 0.5
    for i in range(n):
        x += 1.0
        with lock:
            buffer[i] = x
    t2 = perf_counter()
    closing.set()
    thread.join()
    t3 = perf_counter()
    return {"open": t1 - t0, "appends": t2 - t1, "close": t3 - t2, "whole": t3 - t0}


def writebehind_scalar_job(path: str, n: int) -> dict[str, float]:
    """The same job with writebehind, as the suite's (seconds)."""
    import writebehind

    t0 = perf_counter()
    store = writebehind.StorageInterface(writebehind.NetCDFIODriver(path, "w"))
    append = store.traj[w.VARIABLE].append
    t1 = perf_counter()
    x = 0.5
    for _ in range(n):
        x += 1.0
        append(x)
    t2 = perf_counter()
    store.close()
    t3 = perf_counter()
    return {"open": t1 - t0, "appends": t2 - t1, "close": t3 - t2, "whole": t3 - t0}


# -- 2.4 MB: the caller's time per append ------------------------------------------------
def minimal_large_appends(path: str, frame: Any, n: int) -> np.ndarray[Any, Any]:
    """Caller's time (ns) of each append of a minimal write-behind with a buffer pool."""
    queue: collections.deque[Any] = collections.deque()
    free: list[Any] = []
    cond = threading.Condition()
    done = False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def writer() -> None:
        while True:
            with cond:
                while not queue and not done:
                    cond.wait()
                if not queue:
                    return
                buffer = queue.popleft()
            os.write(fd, buffer)  # releases the GIL
            with cond:
                if len(free) < POOL:
                    free.append(buffer)

    thread = threading.Thread(target=writer)
    thread.start()

    def append(x: Any) -> None:
        with cond:
            buffer = free.pop() if free else None
        if buffer is None:
            buffer = np.empty_like(x)
        buffer[...] = x
        with cond:
            queue.append(buffer)
            cond.notify()

    try:
        return w._timed_appends(append, frame, n)
    finally:
        with cond:
            done = True
            cond.notify()
        thread.join()
        os.close(fd)


# -- one job per fresh interpreter ---------------------------------------------------------
def _latencies(latencies_ns: np.ndarray[Any, Any], name: str) -> dict[str, float]:
    latencies = latencies_ns / 1e3
    return {
        f"{name}_p50_us": float(np.percentile(latencies, 50)),
        f"{name}_p99_us": float(np.percentile(latencies, 99)),
    }


def _parts(parts: dict[str, float], name: str) -> dict[str, float]:
    return {f"{name}_{part}_s": seconds for part, seconds in parts.items()}


#: job name -> what it measures, given a scratch path; each runs in a fresh interpreter
JOBS: dict[str, Any] = {
    "bulk": lambda path: {"bulk_s": w.write_bulk(path, w.bulk_data(0.5, SCALARS)).whole_seconds},
    "minimal-scalar": lambda path: _parts(minimal_scalar_job(path, SCALARS), "minimal"),
    "writebehind-scalar": lambda path: _parts(writebehind_scalar_job(path, SCALARS), "writebehind"),
    "copy": lambda path: _latencies(w.copy_floor(w.make_frame(LARGE_SHAPE), LARGE_FRAMES), "copy"),
    "minimal-large": lambda path: _latencies(
        minimal_large_appends(path, w.make_frame(LARGE_SHAPE), LARGE_FRAMES), "minimal"
    ),
    "writebehind-large": lambda path: _latencies(
        w.write_writebehind(path, w.make_frame(LARGE_SHAPE), LARGE_FRAMES).latencies_ns,
        "writebehind",
    ),
}


def run_job(job: str, directory: str) -> dict[str, float]:
    """Warm up as the suite does, then ``job``; in this interpreter.

    The warm-up (imports, HDF5's initialisation) writes two frames of the job's size. For
    2.4 MB frames that matters beyond the imports: once glibc has freed a block that large
    it serves such blocks from its heap, warm, instead of mapping fresh pages for each (a
    snapshot then costs ~0.15 ms instead of ~1 ms here). Any numpy program that handles
    arrays of that size has freed some already; a process that never did pays fresh pages.
    """
    frame = w.make_frame(LARGE_SHAPE) if job.endswith(("large", "copy")) else 0.5
    warm = os.path.join(directory, f"{job}-warm.nc")
    w.write_bulk(warm, w.bulk_data(frame, 2))
    w.remove(warm)
    w.write_writebehind(warm, frame, 2)
    w.remove(warm)
    path = os.path.join(directory, f"{job}.nc")
    try:
        result: dict[str, float] = JOBS[job](path)
    finally:
        w.remove(path)
    return result


def run_job_in_child(job: str, directory: str) -> dict[str, float]:
    # A fresh interpreter per job: the allocator's state after one job (glibc raises its
    # mmap threshold once large blocks are freed) decides whether the next one's 2.4 MB
    # blocks come from warm heap or fresh pages, which swung a job's p50 by 5x in one process.
    command = [sys.executable, "-m", "benchmarks.floors", "--job", job, "--dir", directory]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"floors job {job} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(lines[-1])
    return result


# -- the report ----------------------------------------------------------------------------
def summarize(rounds: list[dict[str, float]]) -> dict[str, Any]:
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    ratios = {
        "scalar minimal whole / bulk": medians["minimal_whole_s"] / medians["bulk_s"],
        "scalar writebehind whole / bulk": medians["writebehind_whole_s"] / medians["bulk_s"],
    }
    for who in ("minimal", "writebehind"):
        for p in ("p50", "p99"):
            ratios[f"2.4MB {who} {p} / copy p50"] = (
                medians[f"{who}_{p}_us"] / medians["copy_p50_us"]
            )
    return {"medians": medians, "ratios": ratios, "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--job", choices=list(JOBS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.job:  # the child
        print(json.dumps(run_job(args.job, args.dir)))
        return
    rounds = []
    jobs = list(JOBS)
    with tempfile.TemporaryDirectory() as directory:
        for repeat in range(args.repeats):
            measured: dict[str, float] = {}
            for job in jobs[repeat % len(jobs) :] + jobs[: repeat % len(jobs)]:  # rotate
                measured.update(run_job_in_child(job, directory))
            rounds.append(measured)
    result = summarize(rounds)
    m = result["medians"]
    print(f"medians over {args.repeats} rounds, each job in a fresh interpreter")
    print(f"scalar whole job, ms: bulk write {m['bulk_s'] * 1e3:.2f}")
    for who in ("minimal", "writebehind"):
        parts = ", ".join(
            f"{part} {m[f'{who}_{part}_s'] * 1e3:.2f}" for part in ("open", "appends", "close")
        )
        print(f"  {who:11s} whole {m[f'{who}_whole_s'] * 1e3:.2f} ({parts})")
    print(
        f"2.4 MB append, us: plain copy p50 {m['copy_p50_us']:.0f}; minimal write-behind "
        f"p50 {m['minimal_p50_us']:.0f} p99 {m['minimal_p99_us']:.0f}; writebehind "
        f"p50 {m['writebehind_p50_us']:.0f} p99 {m['writebehind_p99_us']:.0f}"
    )
    for name, value in result["ratios"].items():
        print(f"  {name}: {value:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
