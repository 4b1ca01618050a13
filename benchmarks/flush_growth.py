"""How a flush's time grows with the variables already in the file.

Usage: ``python -m benchmarks.flush_growth [--rounds 20] [--reopen 3] [--out FILE]``

The latency job's pattern in one file: each round creates 20 variables of one 24 KB entry
(in a new group) and flushes (the structural flush), then appends one more entry to each and
flushes (the plain data flush). Prints, per round, the variables already in the file and
both flushes' times in ms, as JSON. With ``--reopen N``, the file (of ``1 + 20 * rounds``
variables) is then reopened N times, and each session times its first structural flush
(one attribute: the session's first metadata journal lists every dataset), a second one,
and a flush creating a variable.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import writebehind

NEW_VARIABLES = 20


def run(rounds: int) -> list[dict[str, float]]:
    frame = np.zeros(3000)  # 24 KB
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="writebehind-flush-growth-") as directory,
        writebehind.open(os.path.join(directory, "growth.nc"), "w") as store,
    ):
        for _ in range(NEW_VARIABLES):
            store.data.x.append(frame)
        store.flush()
        for k in range(rounds):
            for j in range(NEW_VARIABLES):
                store[f"made{k}/v{j}"].append(frame)
            started = time.perf_counter()
            store.flush()
            structural = time.perf_counter() - started
            for j in range(NEW_VARIABLES):
                store[f"made{k}/v{j}"].append(frame)
            started = time.perf_counter()
            store.flush()
            data = time.perf_counter() - started
            rows.append(
                {
                    "variables_before": 1 + k * NEW_VARIABLES,
                    "structural_flush_ms": round(structural * 1e3, 2),
                    "data_flush_ms": round(data * 1e3, 2),
                }
            )
    return rows


def reopened(rounds: int, sessions: int) -> list[dict[str, float]]:
    frame = np.zeros(3000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="writebehind-flush-growth-") as directory:
        path = os.path.join(directory, "growth.nc")
        with writebehind.open(path, "w") as store:
            store.data.x.append(frame)
            for k in range(rounds):
                for j in range(NEW_VARIABLES):
                    store[f"made{k}/v{j}"].append(frame)
                store.flush()
        for session in range(sessions):
            with writebehind.open(path, "a") as store:
                store.data.x.append(frame)
                store.flush()
                times = []
                for step in ("first", "second"):
                    started = time.perf_counter()
                    store.add_metadata(f"{step}_{session}", session)
                    store.flush()
                    times.append(time.perf_counter() - started)
                store[f"new{session}/x"].append(frame)
                started = time.perf_counter()
                store.flush()
                times.append(time.perf_counter() - started)
            rows.append(
                {
                    "variables": 1 + rounds * NEW_VARIABLES,
                    "first_attribute_flush_ms": round(times[0] * 1e3, 2),
                    "second_attribute_flush_ms": round(times[1] * 1e3, 2),
                    "new_variable_flush_ms": round(times[2] * 1e3, 2),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--reopen", type=int, default=0, help="sessions after reopening")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = reopened(args.rounds, args.reopen) if args.reopen else run(args.rounds)
    result = {"load_average_end": os.getloadavg(), "rows": rows}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
