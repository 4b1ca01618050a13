"""Soak: append at the highest rate for a long time; memory must stay flat, nothing lost.

Producer threads append as fast as they can to their own variables (frames of positions,
energies, a dict every 100 steps) and to one shared variable, with reads of their latest
entry and flushes mixed in. A sampler records, every second, the process's RSS and the
store's pending bytes and operations and what was written. At full speed the disk fills
quickly (about 170 MB/s here), so the run is cut into *segments*: when the file passes
``--segment-bytes`` the producers pause, the file is closed, reopened read-only and every
entry checked (count, content, each producer's order) by a child process, whose memory is
not the soak's; then it is deleted and a new file started. The summary (JSON) says what was
appended and verified, the rate over time, and how RSS grew; the exit status is 1 if an
entry was lost or RSS grew beyond ``max_pending_bytes`` plus a constant.

    python tools/soak.py                        # 10 minutes, 4 threads
    python tools/soak.py --seconds 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import writebehind

EXACT = 2**24  # float32 holds integers exactly up to here: frame values wrap at it
RSS_CONSTANT_BYTES = 96 * 2**20  # allowed growth beyond max_pending_bytes (code, caches)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # between segments
        return 0


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.directory = Path(args.dir or tempfile.mkdtemp(prefix="writebehind-soak-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.frame_shape = (args.atoms, 3)
        self.stop = threading.Event()
        self.rotate = threading.Event()
        self.paused = threading.Barrier(args.threads + 1)
        self.resumed = threading.Barrier(args.threads + 1)
        self.segment = 0
        self.store = self._open_segment()
        self.counts = [0] * args.threads  # appends of each producer in this segment
        self.totals = {"entries_appended": 0, "entries_verified": 0, "lost": 0}
        self.errors: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.verifying = False

    # -- segments ---------------------------------------------------------------------
    def _path(self) -> Path:
        return self.directory / f"soak-{self.segment}.nc"

    def _open_segment(self) -> writebehind.StorageInterface:
        return writebehind.open(self._path(), "w", max_pending_bytes=self.args.max_pending_bytes)

    def _rotate(self) -> None:
        """Pause the producers, check the whole segment, start the next one."""
        self.paused.wait()
        self.verifying = True
        self.totals["entries_appended"] += sum(self.counts)
        self.store.close()
        self._verify(self._path(), list(self.counts))
        self._path().unlink(missing_ok=True)
        self.segment += 1
        self.store = self._open_segment()
        self.counts = [0] * self.args.threads
        self.verifying = False
        self.rotate.clear()
        self.resumed.wait()

    def _verify(self, path: Path, counts: list[int]) -> None:
        """Check every entry of a closed segment, in a child process (its memory is its own)."""
        if not any(counts):  # a segment started just before the end
            return
        result = subprocess.run(
            [sys.executable, __file__, "--verify", str(path), json.dumps(counts)],
            capture_output=True,
            text=True,
        )
        problems = json.loads(result.stdout) if result.returncode == 0 else [result.stderr]
        for problem in problems:
            self.errors.append(f"segment {self.segment}: {problem}")
            self.totals["lost"] += 1
        self.totals["entries_verified"] += sum(counts)

    # -- producers and sampler ------------------------------------------------------------
    def produce(self, k: int) -> None:
        frame = np.empty(self.frame_shape, np.float32)
        i = 0
        store = None
        try:
            while not self.stop.is_set():
                if self.rotate.is_set():
                    self.paused.wait()
                    self.resumed.wait()
                    i = 0
                    continue
                if store is not self.store:  # a new segment
                    store = self.store
                    group = store[f"producer{k}"]
                frame.fill(i % EXACT)
                group.positions.append(frame)
                group.energy.append(float(i))
                if i % 100 == 0:
                    group.log.append({"step": i, "producer": k, "state": frame[0].copy()})
                if i % 10 == 0:
                    store.shared.append(np.array([k, i], dtype=np.int64))
                i += 1
                self.counts[k] = i
                if i % 1000 == 0:
                    last = group.positions.read(-1)
                    if last[0, 0] != (i - 1) % EXACT:
                        self.errors.append(f"producer {k}: read {last[0, 0]} after {i - 1}")
                if i % 20_000 == 0:
                    store.flush()
        except BaseException as exc:
            self.errors.append(f"producer {k}: {exc!r}")
            self.stop.set()

    def sample(self, started: float) -> None:
        last_applied = 0
        last_time = started
        while not self.stop.wait(self.args.interval):
            now = time.monotonic()
            store = self.store
            stats = store.stats()
            applied_now = stats.operations_applied
            if applied_now < last_applied:  # a new segment
                last_applied = 0
            self.samples.append(
                {
                    "t": round(now - started, 3),
                    "rss_bytes": rss_bytes(),
                    "pending_bytes": stats.pending_bytes,
                    "pending_operations": stats.pending_operations,
                    "applied_per_second": (applied_now - last_applied) / (now - last_time),
                    "file_bytes": _size(self._path()),
                    "segment": self.segment,
                    "verifying": self.verifying,
                }
            )
            last_applied, last_time = applied_now, now
            if len(self.samples) % 10 == 0 and not self.args.quiet:
                s = self.samples[-1]
                print(
                    f"{s['t']:7.0f} s  rss {s['rss_bytes'] / 2**20:7.1f} MiB  pending "
                    f"{s['pending_bytes'] / 2**20:6.1f} MiB  {s['applied_per_second']:9.0f} "
                    f"ops/s  segment {s['segment']}",
                    flush=True,
                )

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        producers = [
            threading.Thread(target=self.produce, args=(k,), name=f"producer{k}")
            for k in range(self.args.threads)
        ]
        sampler = threading.Thread(target=self.sample, args=(started,), name="sampler")
        for thread in [*producers, sampler]:
            thread.start()
        deadline = started + self.args.seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.2)
            path = self._path()
            if path.exists() and path.stat().st_size > self.args.segment_bytes:
                self.rotate.set()
                self._rotate()
        self.stop.set()
        self.rotate.clear()
        for barrier in (self.paused, self.resumed):
            barrier.abort()  # a producer waiting at a barrier returns (BrokenBarrierError)
        for thread in producers:
            thread.join()
        sampler.join()
        self.errors = [e for e in self.errors if "BrokenBarrierError" not in e]
        counts = list(self.counts)
        self.totals["entries_appended"] += sum(counts)
        self.store.close()
        self._verify(self._path(), counts)
        self._path().unlink(missing_ok=True)
        return self.summary(time.monotonic() - started)

    # -- the verdict ------------------------------------------------------------------------
    def summary(self, elapsed: float) -> dict[str, Any]:
        steady = [s for s in self.samples if s["t"] > self.args.warmup and not s["verifying"]]
        rates = sorted(s["applied_per_second"] for s in steady) or [0.0]
        rss = [s["rss_bytes"] for s in steady] or [rss_bytes()]
        baseline = statistics.median(rss[: max(1, len(rss) // 10)])
        times = [s["t"] for s in steady]
        slope = 0.0
        if len(steady) > 2:
            slope = statistics.linear_regression(times, rss).slope * 60  # bytes per minute
        # The median RSS of each minute, and the slope of those medians after the first
        # two minutes: a regression over all samples mixes in the warm-up (allocator
        # arenas, HDF5's per-file caches) and the spikes of closing, checking and opening
        # a segment, and would be the wrong figure to extrapolate to a week.
        minutes: dict[int, list[int]] = {}
        for sample in steady:
            minutes.setdefault(int(sample["t"] // 60), []).append(sample["rss_bytes"])
        per_minute = [statistics.median(v) for _, v in sorted(minutes.items())]
        settled = list(enumerate(per_minute))[2:]
        slope_settled = 0.0
        if len(settled) > 2:
            x, y = zip(*settled, strict=True)
            slope_settled = statistics.linear_regression(x, y).slope
        bound = self.args.max_pending_bytes + RSS_CONSTANT_BYTES
        max_pending = max((s["pending_bytes"] for s in self.samples), default=0)
        growth = max(rss) - baseline
        return {
            "seconds": round(elapsed, 1),
            "threads": self.args.threads,
            "frame_shape": list(self.frame_shape),
            "max_pending_bytes": self.args.max_pending_bytes,
            "segments": self.segment + 1,
            **self.totals,
            "append_calls_per_second": round(self.totals["entries_appended"] / elapsed),
            "operations_per_second": {
                "p5": round(rates[len(rates) // 20]),
                "median": round(statistics.median(rates)),
                "p95": round(rates[len(rates) * 19 // 20]),
            },
            "rss_mib": {
                "baseline": round(baseline / 2**20, 1),
                "max": round(max(rss) / 2**20, 1),
                "growth": round(growth / 2**20, 1),
                "slope_per_minute": round(slope / 2**20, 2),
                "median_per_minute": [round(v / 2**20, 1) for v in per_minute],
                "slope_per_minute_after_2_minutes": round(slope_settled / 2**20, 2),
                "bound": round(bound / 2**20, 1),
            },
            "max_pending_mib": round(max_pending / 2**20, 1),
            "errors": self.errors[:20],
            "ok": not self.errors and self.totals["lost"] == 0 and growth <= bound,
        }


def verify(path: str, counts: list[int], window: int = 200_000) -> list[str]:
    """What is wrong with the segment at ``path`` whose producers appended ``counts``."""
    problems = []
    with writebehind.open(path, "r") as store:
        shared = store.shared.read()
        for k, count in enumerate(counts):
            group = store[f"producer{k}"]
            if (len(group.positions), len(group.energy)) != (count, count):
                problems.append(f"producer {k}: {len(group.positions)} entries, not {count}")
                continue
            for start in range(0, count, window):  # in slices: bounded memory
                stop = min(count, start + window)
                frames = group.positions.read(slice(start, stop))
                expected = np.arange(start, stop) % EXACT
                if not np.array_equal(frames[:, 0, 0], expected) or not bool(
                    (frames == frames[:, :1, :1]).all()
                ):
                    problems.append(f"producer {k}: positions {start}..{stop}")
                energies = group.energy.read(slice(start, stop))
                if not np.array_equal(energies, np.arange(start, stop, dtype=np.float64)):
                    problems.append(f"producer {k}: energy {start}..{stop}")
            if [r["step"] for r in group.log.read()] != list(range(0, count, 100)):
                problems.append(f"producer {k}: log")
            if not np.array_equal(shared[shared[:, 0] == k, 1], np.arange(0, count, 10)):
                problems.append(f"producer {k}: shared")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--atoms", type=int, default=100, help="a frame is (atoms, 3) float32")
    parser.add_argument("--max-pending-bytes", type=int, default=64 * 2**20)
    parser.add_argument("--segment-bytes", type=int, default=2 * 2**30)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out of the stats")
    parser.add_argument("--dir", help="where the segment files go (default: a temp dir)")
    parser.add_argument("--json", help="write the summary and every sample here")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verify", nargs=2, metavar=("FILE", "COUNTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.verify:  # the child that checks a segment
        print(json.dumps(verify(args.verify[0], json.loads(args.verify[1]))))
        return 0
    soak = Soak(args)
    summary = soak.run()
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "samples": soak.samples}))
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
