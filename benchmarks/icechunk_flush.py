"""What one commit per flush costs on Icechunk, against a plain Zarr store (local).

``python -m benchmarks.icechunk_flush``: time per flush (3 variables, one append each per
flush; plain and Icechunk interleaved, 3 rounds, as ratios), and the bytes 50 flushes of
one variable (8 kB per append) leave in each (Icechunk keeps every version of the chunk
being filled). Figures in docs/scale-out.md, "Icechunk".
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

import writebehind


def seconds_per_flush(target: str, flushes: int = 50) -> float:
    with writebehind.open(target, "w") as store:
        store.a.append(np.zeros(100))
        store.b.append(np.zeros(100))
        store.c.append(1.0)
        store.flush()
        start = time.perf_counter()
        for i in range(flushes):
            store.a.append(np.full(100, i))
            store.b.append(np.full(100, i))
            store.c.append(float(i))
            store.flush()
        return (time.perf_counter() - start) / flushes


def stored_bytes(target: str, directory: str, flushes: int = 50) -> int:
    rng = np.random.default_rng(0)
    with writebehind.open(target, "w") as store:
        for _ in range(flushes):
            store.a.append(rng.random(1000))
            store.flush()
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(directory)
        for name in names
    )


def main() -> None:
    for round_ in range(3):
        where = tempfile.mkdtemp()
        try:
            plain = seconds_per_flush(f"{where}/run.zarr")
            ice = seconds_per_flush(f"icechunk://{where}/repo")
        finally:
            shutil.rmtree(where)
        print(
            f"round {round_}: plain Zarr {plain * 1e3:.1f} ms/flush, Icechunk "
            f"{ice * 1e3:.1f} ms/flush, ratio {ice / plain:.2f}"
        )
    where = tempfile.mkdtemp()
    try:
        plain_bytes = stored_bytes(f"{where}/run.zarr", f"{where}/run.zarr")
        ice_bytes = stored_bytes(f"icechunk://{where}/repo", f"{where}/repo")
    finally:
        shutil.rmtree(where)
    print(
        f"50 flushes of 8 kB: plain Zarr {plain_bytes / 1e6:.2f} MB, "
        f"Icechunk {ice_bytes / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
