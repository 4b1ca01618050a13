"""The latency budget of every caller-visible operation (issue 15).

Usage::

    .venv/bin/python -m benchmarks.latency [--quick] [--repeats 3] [--groups a,b] [--out FILE]

Measures the caller's time of each operation a store offers, as p50 / p99 / max over a run,
beside its target and a peer where one exists, and says whether the target is met:

- appends (scalar, 24 KB, 2.4 MB frames), peer: the plain copy ``np.array(x, copy=True)``
  of the same frame in the same process;
- the first append of a new variable; ``write`` (a new fixed variable of 24 KB);
  ``add_metadata``; ``read`` of a variable with nothing pending; ``flush()`` with nothing
  pending; ``flush()`` right after creating 20 variables with an entry each (peer: the same
  flush after 20 entries appended to existing variables, the data's write time); ``close()``
  of a store with nothing pending;
- the same through the async store (anyio on asyncio);
- the largest gap of a 1 ms ticker on an asyncio loop while a *sync* store is used inside
  it (appends, flushes, creating variables, close), peer: the ticker on an idle loop; the
  same for the gaps that span no sync ``flush()`` call, and the flush calls' own times,
  the floor of a gap that spans one (a sync call blocks the loop's thread);
- the first append of a new variable beside a spin of its p50 timed alike: the machine's
  p99 for work that long (preemption by other processes), the floor of its p99;
- the whole scalar job (open, 2000 appends, close) against the minimal write-behind store
  of ``benchmarks.floors``, the two alternated in one process.

Each group runs in a fresh interpreter (after the suite's warm-up), ``--repeats`` rounds
rotating the order; a row's p50 and p99 are the medians over the rounds, its max the
largest. ``python -m benchmarks`` runs it too (``--no-latency`` skips it). The interpreter's
``PYTHONPATH`` decides which writebehind is measured (``writebehind_file`` in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from . import workloads as w
from .latency_report import summarize, table

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"scalar": (), "24KB": (1000, 3), "2.4MB": (100000, 3)}
#: appends per run (full, quick, smoke: the test suite's run, too few to mean anything)
APPENDS = {"scalar": (2000, 300, 20), "24KB": (2000, 300, 20), "2.4MB": (200, 40, 4)}
OPS_SAMPLES = (200, 40, 4)  # first appends, writes, metadata, reads, flushes
STRUCTURAL_FLUSHES = (20, 5, 2)  # flushes after creating 20 variables
CLOSES = (20, 5, 2)
SCALAR_JOB_PAIRS = (7, 3, 1)
FULL, QUICK, SMOKE = 0, 1, 2
NEW_VARIABLES = 20
#: A step that stores a few large arrays: appends in bursts, then the caller computes.
BURST = 10
PAUSE_SECONDS = 0.04
SPIN_PEER = "spin of its p50 (machine floor)"


def _stats(samples_ns: Any) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    p50, p99 = np.percentile(us, [50, 99])
    return {"n": int(us.size), "p50_us": float(p50), "p99_us": float(p99), "max_us": us.max()}


def _timed(action: Callable[[], Any]) -> int:
    started = perf_counter_ns()
    action()
    return perf_counter_ns() - started


def spin_floor(samples_ns: Any) -> np.ndarray[Any, Any]:
    """As many spins of the samples' median length, timed alike: the machine's percentiles
    for work that long on this thread (preemption by other processes), no writebehind."""
    length = int(np.median(samples_ns))
    latencies = np.empty(len(samples_ns), dtype=np.int64)
    for i in range(len(latencies)):
        started = perf_counter_ns()
        while perf_counter_ns() - started < length:
            pass
        latencies[i] = perf_counter_ns() - started
    return latencies


def _warm_up(directory: str, shape: tuple[int, ...]) -> None:
    """As the suite's workers: imports, HDF5's start, frames of the job's size freed once."""
    frame = w.make_frame(shape)
    path = os.path.join(directory, "warm.nc")
    w.write_bulk(path, w.bulk_data(frame, 2))
    w.remove(path)
    w.write_writebehind(path, frame, 2)
    w.remove(path)


def _row(op: str, face: str, samples: Any, peer: str = "", peer_samples: Any = None) -> dict:
    row: dict[str, Any] = {"op": op, "face": face, **_stats(samples)}
    if peer:
        row["peer"] = peer
        row["peer_stats"] = _stats(peer_samples)
    return row


# -- sync groups -----------------------------------------------------------------------
def group_append(size: str, directory: str, mode: int, bursts: bool = False) -> list[dict]:
    """Appends back to back (faster than the disk for 2.4 MB frames); with ``bursts``, in
    bursts of ``BURST`` with a pause of ``PAUSE_SECONDS`` (the caller computing) between."""
    import writebehind

    shape, n = SIZES[size], APPENDS[size][mode]
    _warm_up(directory, shape)
    frame = w.make_frame(shape)
    path = os.path.join(directory, f"append-{size}.nc")
    store = writebehind.open(path, "w")
    append = store.traj.x.append
    started = time.perf_counter()
    if bursts:
        parts = []
        for _ in range(-(-n // BURST)):
            parts.append(w._timed_appends(append, frame, BURST))
            time.sleep(PAUSE_SECONDS)  # the caller's work between bursts
        latencies = np.concatenate(parts)
    else:
        latencies = w._timed_appends(append, frame, n)
    store.close()
    job_s = time.perf_counter() - started
    w.remove(path)
    copy = w.copy_floor(frame, n)
    op = f"append {size}" + (f" in bursts of {BURST}" if bursts else "")
    row = _row(op, "sync", latencies, "np.array(x, copy=True)", copy)
    row.update(
        job_s=job_s,
        backpressure_waits=store.stats().backpressure_waits,
    )
    return [row]


def _fill(store: Any, frame: Any) -> None:
    for i in range(20):
        store.data.x.append(frame)
        store.data.s.append(float(i))
    store.flush()


def group_ops(directory: str, mode: int) -> list[dict]:
    import writebehind

    _warm_up(directory, (1000, 3))
    n = OPS_SAMPLES[mode]
    frame = w.make_frame((1000, 3))
    path = os.path.join(directory, "ops.nc")
    rows = []
    with writebehind.open(path, "w") as store:
        _fill(store, frame)
        first = [_timed(lambda i=i: store[f"new{i // 50}/v{i}"].append(frame)) for i in range(n)]
        rows.append(
            _row("first append of a new variable", "sync", first, SPIN_PEER, spin_floor(first))
        )
        writes = [_timed(lambda i=i: store[f"fixed/w{i}"].write(frame)) for i in range(n)]
        rows.append(_row("write (new 24 KB variable)", "sync", writes))
        node = store.data.x
        meta = [_timed(lambda i=i: node.add_metadata(f"note{i}", f"value {i}")) for i in range(n)]
        rows.append(_row("add_metadata", "sync", meta))
        store.flush()
        reads = [_timed(store.data.s.read) for _ in range(n)]
        rows.append(_row("read, nothing pending (20 scalars)", "sync", reads))
        flushes = [_timed(store.flush) for _ in range(n)]
        rows.append(_row("flush, nothing pending", "sync", flushes))
    w.remove(path)
    # In a file of its own: the flush's cost grows with the variables in the file.
    path = os.path.join(directory, "structural.nc")
    with writebehind.open(path, "w") as store:
        _fill(store, frame)
        structural, data = [], []
        for k in range(STRUCTURAL_FLUSHES[mode]):
            for j in range(NEW_VARIABLES):
                store[f"made{k}/v{j}"].append(frame)
            structural.append(_timed(store.flush))
            for j in range(NEW_VARIABLES):  # the same data to existing variables
                store[f"made{k}/v{j}"].append(frame)
            data.append(_timed(store.flush))
    rows.append(
        _row("flush after creating 20 variables", "sync", structural, "same data, no new", data)
    )
    w.remove(path)
    closes = []
    for k in range(CLOSES[mode]):
        path = os.path.join(directory, f"close{k}.nc")
        store = writebehind.open(path, "w")
        _fill(store, frame)
        closes.append(_timed(store.close))
        w.remove(path)
    rows.append(_row("close, nothing pending", "sync", closes))
    return rows


def group_loop_gap(directory: str, mode: int) -> list[dict]:
    """The largest gap of a 1 ms asyncio ticker while a sync store works on the loop.

    A sync ``flush()`` blocks the thread that calls it, here the loop's, for the whole
    flush: a gap that spans one is at least that long. So the gaps are also split: those
    that span no ``flush()`` call (what the writer's background work costs the loop: the
    GIL it holds, the machine) and, as the floor of the others, the flush calls' own times.
    """
    import asyncio

    import writebehind

    _warm_up(directory, (1000, 3))
    frame = w.make_frame((1000, 3))
    path = os.path.join(directory, "gap.nc")
    n = APPENDS["24KB"][mode]
    flushes: list[tuple[int, int]] = []  # (started, ended) of each sync flush() call

    async def gaps_while(work: Callable[[], Any]) -> list[tuple[int, int]]:
        gaps: list[tuple[int, int]] = []  # (ended, length)
        running = True

        async def ticker() -> None:
            last = perf_counter_ns()
            while running:
                await asyncio.sleep(0.001)
                now = perf_counter_ns()
                gaps.append((now, now - last))
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        gaps.clear()
        await work()
        running = False
        await task
        return gaps

    async def idle() -> None:
        await asyncio.sleep(0.3)

    def flush(store: Any) -> None:
        started = perf_counter_ns()
        store.flush()
        flushes.append((started, perf_counter_ns()))

    async def use_sync_store() -> None:
        store = writebehind.open(path, "w")
        for i in range(n):
            store.traj.x.append(frame)
            if i % 100 == 99:
                flush(store)
            if i % 400 == 399:  # 20 new variables and their flush
                for j in range(NEW_VARIABLES):
                    store[f"g{i}/v{j}"].append(frame)
                flush(store)
            await asyncio.sleep(0)  # the loop runs between the calls, as a server's would
        store.close()

    idle_gaps = [gap for _, gap in asyncio.run(gaps_while(idle))]
    busy = asyncio.run(gaps_while(use_sync_store))
    w.remove(path)

    def spans_a_flush(ended: int, length: int) -> bool:
        return any(start < ended and stop > ended - length for start, stop in flushes)

    outside = [gap for ended, gap in busy if not spans_a_flush(ended, gap)]
    all_gaps = [gap for _, gap in busy]
    rows = [_row("event-loop gap, sync store in the loop", "sync", all_gaps, "idle", idle_gaps)]
    if outside:  # (a smoke run has too few appends to flush)
        op = "event-loop gap outside sync flush() calls"
        rows.append(_row(op, "sync", outside, "idle", idle_gaps))
    if flushes:
        op = "sync flush() on the loop (floor of the gaps)"
        rows.append(_row(op, "sync", [stop - start for start, stop in flushes]))
    return rows


def group_scalar_job(directory: str, mode: int) -> list[dict]:
    from . import floors

    _warm_up(directory, ())
    path = os.path.join(directory, "scalar-job.nc")
    ratios, ours, minimal = [], [], []
    for k in range(SCALAR_JOB_PAIRS[mode]):
        jobs = [floors.minimal_scalar_job, floors.writebehind_scalar_job]
        pair = {}
        for job in jobs if k % 2 else jobs[::-1]:
            pair[job.__name__] = job(path, floors.SCALARS)["whole"]
            w.remove(path)
        ours.append(pair["writebehind_scalar_job"] * 1e9)
        minimal.append(pair["minimal_scalar_job"] * 1e9)
        ratios.append(pair["writebehind_scalar_job"] / pair["minimal_scalar_job"])
    row = _row("scalar job / minimal store", "sync", ours, "floors.minimal_scalar_job", minimal)
    row["ratio"] = statistics.median(ratios)
    return [row]


# -- async groups ------------------------------------------------------------------------
def group_async_append(size: str, directory: str, mode: int) -> list[dict]:
    import anyio

    import writebehind

    shape, n = SIZES[size], APPENDS[size][mode]
    _warm_up(directory, shape)
    frame = w.make_frame(shape)
    path = os.path.join(directory, f"async-{size}.nc")

    async def job() -> np.ndarray:
        latencies = np.empty(n, dtype=np.int64)
        async with writebehind.open_async(path, "w") as store:
            node = store.traj.x
            current = frame
            for i in range(n):
                current = w.bump(current, i)
                started = perf_counter_ns()
                await node.append(current)
                latencies[i] = perf_counter_ns() - started
        return latencies

    latencies = anyio.run(job, backend="asyncio")
    w.remove(path)
    copy = w.copy_floor(frame, n)
    return [_row(f"append {size}", "async", latencies, "np.array(x, copy=True)", copy)]


def group_async_ops(directory: str, mode: int) -> list[dict]:
    import anyio

    import writebehind

    _warm_up(directory, (1000, 3))
    n = OPS_SAMPLES[mode]
    frame = w.make_frame((1000, 3))
    path = os.path.join(directory, "async-ops.nc")
    structural_path = os.path.join(directory, "async-structural.nc")

    async def timed(action: Callable[[], Any]) -> int:
        started = perf_counter_ns()
        await action()
        return perf_counter_ns() - started

    async def job() -> list[dict]:
        rows = []
        async with writebehind.open_async(path, "w") as store:
            for i in range(20):
                await store.data.x.append(frame)
                await store.data.s.append(float(i))
            await store.flush()
            first = [
                await timed(lambda i=i: store[f"n{i // 50}/v{i}"].append(frame)) for i in range(n)
            ]
            rows.append(
                _row("first append of a new variable", "async", first, SPIN_PEER, spin_floor(first))
            )
            writes = [await timed(lambda i=i: store[f"fixed/w{i}"].write(frame)) for i in range(n)]
            rows.append(_row("write (new 24 KB variable)", "async", writes))
            node = store.data.x
            meta = [
                await timed(lambda i=i: node.add_metadata(f"note{i}", f"value {i}"))
                for i in range(n)
            ]
            rows.append(_row("add_metadata", "async", meta))
            await store.flush()
            reads = [await timed(store.data.s.read) for _ in range(n)]
            rows.append(_row("read, nothing pending (20 scalars)", "async", reads))
            flushes = [await timed(store.flush) for _ in range(n)]
            rows.append(_row("flush, nothing pending", "async", flushes))
        structural, data = [], []
        async with writebehind.open_async(structural_path, "w") as store:
            for _ in range(20):
                await store.data.x.append(frame)
            await store.flush()
            for k in range(STRUCTURAL_FLUSHES[mode]):
                for j in range(NEW_VARIABLES):
                    await store[f"made{k}/v{j}"].append(frame)
                structural.append(await timed(store.flush))
                for j in range(NEW_VARIABLES):
                    await store[f"made{k}/v{j}"].append(frame)
                data.append(await timed(store.flush))
        rows.append(
            _row(
                "flush after creating 20 variables", "async", structural, "same data, no new", data
            )
        )
        closes = []
        for k in range(CLOSES[mode]):
            close_path = os.path.join(directory, f"aclose{k}.nc")
            store = await writebehind.open_async(close_path, "w")
            for _ in range(20):
                await store.data.x.append(frame)
            await store.flush()
            closes.append(await timed(store.aclose))
            w.remove(close_path)
        rows.append(_row("close, nothing pending", "async", closes))
        return rows

    rows: list[dict] = anyio.run(job, backend="asyncio")
    w.remove(path)
    w.remove(structural_path)
    return rows


GROUPS: dict[str, Callable[[str, bool], list[dict]]] = {
    "append-scalar": lambda d, q: group_append("scalar", d, q),
    "append-24KB": lambda d, q: group_append("24KB", d, q),
    "append-2.4MB": lambda d, q: group_append("2.4MB", d, q),
    "append-2.4MB-bursts": lambda d, q: group_append("2.4MB", d, q, bursts=True),
    "ops": group_ops,
    "loop-gap": group_loop_gap,
    "scalar-job": group_scalar_job,
    "async-append-scalar": lambda d, q: group_async_append("scalar", d, q),
    "async-append-24KB": lambda d, q: group_async_append("24KB", d, q),
    "async-append-2.4MB": lambda d, q: group_async_append("2.4MB", d, q),
    "async-ops": group_async_ops,
}


def run_group_in_child(group: str, directory: str, mode: int, env: dict) -> list[dict]:
    command = [sys.executable, "-m", "benchmarks.latency", "--child", group, "--dir", directory]
    done = subprocess.run(
        [*command, f"--mode={mode}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"latency group {group} failed:\n{done.stderr[-3000:]}")
    rows: list[dict] = json.loads(lines[-1])
    return rows


def child_env(source: str) -> dict[str, str]:
    """The environment of a child measuring the writebehind of ``source``."""
    path = [source, str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run(groups: list[str], repeats: int, mode: int, pythonpath: str | None) -> dict:
    source = pythonpath or str(ROOT / "src")
    env = child_env(source)
    rounds: list[list[dict]] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="writebehind-latency-") as directory:
        for repeat in range(repeats):
            order = groups[repeat % len(groups) :] + groups[: repeat % len(groups)]
            rows: list[dict] = []
            for group in order:
                rows += run_group_in_child(group, directory, mode, env)
                print(f"  [{repeat + 1}/{repeats}] {group}", file=sys.stderr, flush=True)
            rounds.append(rows)
    order_of = {name: i for i, name in enumerate(GROUPS)}
    summary = summarize(rounds)
    summary.sort(key=lambda r: (r["face"] == "async", order_of.get(_group_of(r), 99)))
    return {
        "command": "python -m benchmarks.latency " + " ".join(sys.argv[1:]),
        "source": source,
        "repeats": repeats,
        "mode": ["full", "quick", "smoke"][mode],
        "seconds": round(time.time() - started, 1),
        "load_average_end": os.getloadavg(),
        "rows": summary,
    }


def _group_of(row: dict) -> str:
    op = row["op"]
    if op.startswith("append"):
        return "append-" + op.split()[1]
    if op.startswith(("event-loop", "sync flush() on the loop")):
        return "loop-gap"
    if op.startswith("scalar job"):
        return "scalar-job"
    return "ops"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, one round")
    parser.add_argument("--repeats", type=int, help="rounds (default 3; quick 1)")
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma-separated")
    parser.add_argument("--pythonpath", help="the writebehind source to measure (default ours)")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests
    parser.add_argument("--mode", type=int, default=FULL, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=list(GROUPS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        rows = GROUPS[args.child](args.dir, args.mode)
        import writebehind

        for row in rows:
            row["writebehind_file"] = writebehind.__file__
        print(json.dumps(rows, default=float))
        return 0
    groups = [g for g in args.groups.split(",") if g]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; choose from {list(GROUPS)}")
    mode = SMOKE if args.smoke else QUICK if args.quick else FULL
    repeats = args.repeats or (3 if mode == FULL else 1)
    result = run(groups, repeats, mode, args.pythonpath)
    print(table(result["rows"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
