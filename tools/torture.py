"""The full kill-torture run (the CI variant is tests/test_durability_torture.py).

Usage: ``.venv/bin/python tools/torture.py [--random N] [--seed S] [--out results.json]``

1. N random SIGKILLs (default 100, fixed seed) of children appending to six variables,
   continuing one file per chain, so every child first recovers its predecessor's crash;
2. a SIGKILL at every pwrite64 of every flush (and the close) of a fixed run of 30 frames
   flushed every 5, the third flush creating a group and a variable;
3. a SIGKILL at every pwrite64 of the flush that first splits a variable's chunk index (an
   HDF5 B-tree of 64 chunks a node), with 1 MiB entries (``big``): the undo journal of
   ``_journal.py`` is what keeps those entries;
4. 20 SIGKILLs as soon as a child's first acknowledgement arrives;
5. negative controls: acknowledging before flushing must be caught.

Prints one JSON document (also written to ``--out``) with, per part: trials, acknowledged
entries checked, lost (must be 0), torn, files unreadable before and after recovery.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from torture import harness


def _part(name: str, trials: list[harness.Trial], started: float) -> dict[str, Any]:
    summary = harness.summarize(trials)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["failures"] = harness.failures(trials)[:20]
    print(f"{name}: {json.dumps({k: v for k, v in summary.items() if k != 'failures'})}")
    for line in summary["failures"]:
        print(f"  {line[:400]}")
    sys.stdout.flush()
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=100, help="random kills (default 100)")
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-split", action="store_true", help="skip part 3 (slow)")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "strace": harness.strace_available(),
    }
    with tempfile.TemporaryDirectory(prefix="writebehind-torture-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        (work / "random").mkdir()
        trials = harness.random_kills(work / "random", args.random, args.seed, chains=args.workers)
        results["random_kills"] = _part("random kills", trials, started)

        if harness.strace_available():
            (work / "pwrite").mkdir()
            frames, every = 30, 5
            ranges = harness.flush_pwrites(work / "pwrite", frames, every)
            last = ranges[-1][1]
            started = time.monotonic()
            # every pwrite64 of the run: each flush, and the close after the last one
            trials = harness.pwrite_kills(
                work / "pwrite",
                range(1, last + 1),
                frames=frames,
                flush_every=every,
                workers=args.workers,
            )
            results["pwrite_kills_every_flush"] = _part("pwrite kills", trials, started)
            results["pwrite_kills_every_flush"]["flush_ranges"] = ranges

            started = time.monotonic()
            first, _ = ranges[2]
            trials = harness.pwrite_kills(
                work / "pwrite",
                [first, first + 1, first + 2],
                frames=frames,
                flush_every=every,
                ack_before_flush=True,
                workers=args.workers,
            )
            results["negative_control_pwrite"] = _part("negative control", trials, started)

            if not args.skip_split:
                (work / "split").mkdir()
                frames = 70
                ranges = harness.flush_pwrites(work / "split", frames, 1, ["big"])
                first, last = ranges[64]  # the 65th flush writes the 65th chunk
                started = time.monotonic()
                trials = harness.pwrite_kills(
                    work / "split",
                    range(first, last + 1),
                    frames=frames,
                    flush_every=1,
                    variables=["big"],
                    workers=args.workers,
                )
                results["pwrite_kills_chunk_index_split"] = _part(
                    "chunk index split", trials, started
                )
        started = time.monotonic()
        (work / "on-ack").mkdir()
        trials = harness.random_kills(
            work / "on-ack", 20, args.seed + 2, chains=args.workers, kill_on_ack=True
        )
        results["kill_on_acknowledgement"] = _part("kill on acknowledgement", trials, started)

        started = time.monotonic()
        (work / "control").mkdir()
        trials = harness.random_kills(
            work / "control",
            10,
            args.seed + 1,
            chains=args.workers,
            ack_before_flush=True,
            kill_on_ack=True,
        )
        results["negative_control_random"] = _part("negative control (random)", trials, started)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
