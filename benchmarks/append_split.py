"""Where the caller's time per append goes, for 2.4 MB frames: fresh pages or not.

``python -m benchmarks.append_split [--rounds 2]`` appends 200 frames of 100000x3 float64
to a NetCDF file and to a Zarr directory (each in a fresh interpreter, after a 2-frame
warm-up), and splits the appends by the minor page faults of the caller's thread during
each (over 100: its snapshot landed in fresh pages, else in a recycled buffer). For each
class: the share of appends, the median wall and thread-CPU time. Linux only
(``RUSAGE_THREAD``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

FRAMES = 200
SHAPE = (100000, 3)


def _job(kind: str, directory: str) -> dict[str, Any]:
    import writebehind

    def run(name: str, n: int) -> dict[str, Any]:
        path = os.path.join(directory, name)
        if kind == "netcdf":
            store = writebehind.StorageInterface(writebehind.NetCDFBackend(path + ".nc", "w"))
        else:
            store = writebehind.open(path + ".zarr", "w")
        node = store.traj["x"]
        frame = np.random.default_rng(0).random(SHAPE)
        wall, cpu, faults = (np.empty(n, dtype=np.int64) for _ in range(3))
        for i in range(n):
            frame.flat[0] = i
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
            node.append(frame)
            wall[i], cpu[i] = time.perf_counter_ns() - wall0, time.thread_time_ns() - cpu0
            faults[i] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
        store.close()
        fresh = faults > 100
        out: dict[str, Any] = {"p50_us": float(np.median(wall)) / 1e3, "fresh": float(fresh.mean())}
        for label, picked in (("fresh", fresh), ("recycled", ~fresh)):
            if picked.any():
                out[f"{label}_wall_us"] = float(np.median(wall[picked])) / 1e3
                out[f"{label}_cpu_us"] = float(np.median(cpu[picked])) / 1e3
        return out

    run("warm", 2)
    return run("job", FRAMES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        with tempfile.TemporaryDirectory() as directory:
            print(json.dumps(_job(args.job, directory)))
        return
    for _ in range(args.rounds):
        for kind in ("netcdf", "zarr"):
            command = [sys.executable, "-m", "benchmarks.append_split", "--job", kind]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            figures = " ".join(f"{key} {value:.3g}" for key, value in result.items())
            print(f"{kind:7} {figures}", flush=True)


if __name__ == "__main__":
    main()
