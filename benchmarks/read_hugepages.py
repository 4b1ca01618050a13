"""Why reading a 48 MB variable back sometimes takes 0.1 s instead of 0.01 s.

Usage::

    .venv/bin/python -m benchmarks.read_hugepages [--reads 30] [--rounds 2]

Writes 2000 frames of 1000x3 float64 (the benchmark's 24 KB job) with writebehind, then, in
fresh interpreters, opens the file ``--reads`` times and reads the whole variable, with
numpy's transparent-huge-page advice on (numpy's default: it calls
``madvise(MADV_HUGEPAGE)`` on large arrays) and off
(``np._core.multiarray._set_madvise_hugepage(False)``). Prints the median, the 90th
percentile and the largest read time of each, and how many reads took over 40 ms.

Where the kernel compacts memory on such a fault (``/sys/kernel/mm/transparent_hugepage/
defrag`` set to ``madvise``), a read that needs fresh huge pages can stall for tens of
milliseconds; without the advice every read faults in 4 KiB pages, steadily slower.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

READER = """
import sys, time
import numpy as np
if sys.argv[2] == "off":
    np._core.multiarray._set_madvise_hugepage(False)
import writebehind
times = []
for _ in range(int(sys.argv[3])):
    store = writebehind.open(sys.argv[1], "r")
    started = time.perf_counter()
    store.traj.x.read()
    times.append((time.perf_counter() - started) * 1e3)
    store.close()
times.sort()
n = len(times)
print(f"huge pages {sys.argv[2]:>3}: median {times[n // 2]:6.1f} ms, "
      f"p90 {times[int(n * 0.9)]:6.1f} ms, max {times[-1]:6.1f} ms, "
      f"over 40 ms: {sum(t > 40 for t in times)} of {n}")
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    from benchmarks.workloads import make_frame, write_writebehind

    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "read.nc")
        write_writebehind(path, make_frame((1000, 3)), 2000)
        for _ in range(args.rounds):
            for advice in ("on", "off"):
                command = [sys.executable, "-c", READER, path, advice, str(args.reads)]
                subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
