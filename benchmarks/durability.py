"""What each durability setting costs: appends per second with flushes of each kind.

Usage: ``.venv/bin/python -m benchmarks.durability [--frames N] [--repeats R] [--out FILE]``

Each run appends N frames of 24 KB (positions of 1000 atoms, float64) and one float to a new
file in a temporary directory beside the repository, flushing as the setting says; the time
runs from after two warm-up flushes (variables created, chunk indexes found) to a last
flush. Settings:

- ``flush at the end``: nothing is acknowledged before the last flush (or ``close()``);
- ``flush every K``: ``flush()`` every K frames (survives a kill of the process);
- ``durable every K``: ``flush(durable=True)`` every K frames (also fsynced: survives an OS
  crash or power loss, within the limits docs/durability.md states);
- ``..., no journal``: the same without the undo journal of chunk indexes (a private switch),
  to show what the journal costs.

It also times one structural change (a new variable) in a file that already holds data,
which copies the file first (the rollback copy), against the same flush without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import writebehind

FRAME_SHAPE = (1000, 3)
SETTINGS: list[tuple[str, int, bool, bool]] = [  # name, flush every, durable, index journal
    ("flush at the end", 0, False, True),
    ("flush every 100", 100, False, True),
    ("flush every 10", 10, False, True),
    ("flush every 1", 1, False, True),
    ("durable every 100", 100, True, True),
    ("durable every 10", 10, True, True),
    ("durable every 1", 1, True, True),
    # the same without the undo journal of chunk indexes, to show what it costs
    ("flush every 10, no journal", 10, False, False),
    ("flush every 1, no journal", 1, False, False),
    ("durable every 1, no journal", 1, True, False),
]


def run_setting(directory: Path, frames: int, every: int, durable: bool, journal: bool) -> float:
    """Seconds to append ``frames`` frames with the given flushes, open to close."""
    path = directory / "bench.nc"
    positions = np.random.default_rng(0).random(FRAME_SHAPE)
    with writebehind.open(path, "w") as store:
        if not journal:  # a private switch, for this measurement only
            store.storage_driver.backend._index_journal = None  # type: ignore[union-attr]
        traj = store.traj
        # Warm up: create the variables and find their chunk indexes (one-time costs that
        # structural_change_cost measures), so the figure is the steady throughput.
        for _ in range(2):
            traj.positions.append(positions)
            traj.energy.append(0.0)
            store.flush()
        started = time.perf_counter()
        for i in range(frames):
            positions[0, 0] = i
            traj.positions.append(positions)
            traj.energy.append(float(i))
            if every and (i + 1) % every == 0:
                store.flush(durable=durable)
        store.flush()  # everything written (what close would do), inside the timing
        seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def structural_change_cost(directory: Path, megabytes: int) -> dict[str, float]:
    """Seconds of a flush that creates a variable in a file of ``megabytes`` MB (it copies
    the file first: the rollback copy), of a flush of one more frame, and of the first such
    flush after the file was created (it finds the chunk indexes: a subprocess)."""
    path = directory / "structure.nc"
    frames = megabytes * 1_000_000 // (8 * FRAME_SHAPE[0] * FRAME_SHAPE[1])
    positions = np.random.default_rng(0).random(FRAME_SHAPE)
    with writebehind.open(path, "w") as store:
        for _ in range(frames):
            store.traj.positions.append(positions)
        store.flush()
        started = time.perf_counter()
        store.traj.positions.append(positions)
        store.flush()
        first_data_flush = time.perf_counter() - started
        started = time.perf_counter()
        store.traj.positions.append(positions)
        store.flush()
        data_flush = time.perf_counter() - started
        started = time.perf_counter()
        store.checkpoint.append({"step": frames})
        store.flush()
        structural_flush = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return {
        "file_mb": round(size / 1e6, 1),
        "data_flush_seconds": data_flush,
        "first_data_flush_seconds": first_data_flush,
        "structural_flush_seconds": structural_flush,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    frame_bytes = 8 * FRAME_SHAPE[0] * FRAME_SHAPE[1] + 8
    here = Path(__file__).resolve().parent.parent
    results: dict[str, Any] = {"frames": args.frames, "frame_bytes": frame_bytes, "settings": []}
    with tempfile.TemporaryDirectory(prefix="writebehind-durability-", dir=here) as tmp:
        directory = Path(tmp)
        for name, every, durable, journal in SETTINGS:
            times = [
                run_setting(directory, args.frames, every, durable, journal)
                for _ in range(args.repeats)
            ]
            median = statistics.median(times)
            row = {
                "setting": name,
                "frames_per_second": round(args.frames / median),
                "mb_per_second": round(args.frames * frame_bytes / median / 1e6, 1),
                "seconds": [round(t, 3) for t in times],
            }
            results["settings"].append(row)
            print(
                f"{name:>18}: {row['frames_per_second']:>7} frames/s "
                f"{row['mb_per_second']:>7} MB/s  (runs: {row['seconds']})",
                flush=True,
            )
        for megabytes in (10, 200):
            cost = structural_change_cost(directory, megabytes)
            results.setdefault("structural_change", []).append(cost)
            print(
                f"new variable in a {cost['file_mb']} MB file: flush "
                f"{cost['structural_flush_seconds']:.3f} s (a data flush: "
                f"{cost['data_flush_seconds']:.4f} s; the first one: "
                f"{cost['first_data_flush_seconds']:.3f} s)",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
