"""Two interleaved A/Bs of the Zarr backend on a local directory (no S3 server needed).

Usage::

    .venv/bin/python -m benchmarks.zarr_ab [--rounds 5]

- ``overlap``: 16 variables of 4096 entries of 512 B (two 1 MiB chunks each), appended and
  flushed through a store whose every get and set takes 30 ms more
  (``zarr.testing.store.LatencyStore``, standing in for object storage): the backend's
  chunk writes overlapped, against the same writes waited for one at a time.
- ``bulk``: 64 MiB of float32 frames (4096 x 16 KiB) appended one by one through
  writebehind, to close, against zarr's own bulk write of the same array (same chunks,
  same codecs).

Prints the median of each variant and the ratio of the medians. Not a row of
``python -m benchmarks`` (yet).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def overlap(rounds: int, root: Path) -> None:
    from zarr.storage import LocalStore
    from zarr.testing.store import LatencyStore

    import writebehind
    from writebehind.drivers import _zarr_io

    def slow_store(target: str, read_only: bool, options: Any) -> Any:
        local = LocalStore(target, read_only=read_only)
        return LatencyStore(local, get_latency=0.03, set_latency=0.03)

    overlapped = _zarr_io.PendingWrites.add

    def one_at_a_time(self: Any, keys: Any, nbytes: int, write: Any) -> None:
        overlapped(self, keys, nbytes, write)
        self.wait()

    frame = np.ones(128, dtype="f4")

    def run(add: Callable[..., None], path: Path) -> float:
        _zarr_io.PendingWrites.add = add  # type: ignore[method-assign]
        start = time.perf_counter()
        with writebehind.open(path, "w") as store:
            for _ in range(4096):
                for v in range(16):
                    store[f"v{v}"].append(frame)
            store.flush()
        return time.perf_counter() - start

    make_store = _zarr_io.make_store
    _zarr_io.make_store = slow_store
    try:
        _report(
            "overlap (16 variables, 30 ms a request)",
            {
                "overlapped": lambda p: run(overlapped, p),
                "one at a time": lambda p: run(one_at_a_time, p),
            },
            rounds,
            root,
        )
    finally:
        _zarr_io.make_store = make_store
        _zarr_io.PendingWrites.add = overlapped  # type: ignore[method-assign]


def bulk(rounds: int, root: Path) -> None:
    import zarr

    import writebehind
    from writebehind.codecs.base import Layout
    from writebehind.drivers._zarr_layout import chunk_shape

    data = np.random.default_rng(0).standard_normal((4096, 4096)).astype("f4")
    chunks = chunk_shape(Layout("numeric", np.dtype("f4"), (4096,)), True)

    def ours(path: Path) -> float:
        start = time.perf_counter()
        with writebehind.open(path, "w") as store:
            for frame in data:
                store.x.append(frame)
        return time.perf_counter() - start

    def theirs(path: Path) -> float:
        start = time.perf_counter()
        array = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype="f4")
        array[:] = data
        return time.perf_counter() - start

    _report("bulk (64 MiB)", {"writebehind": ours, "zarr bulk write": theirs}, rounds, root)


def _report(
    title: str, variants: dict[str, Callable[[Path], float]], rounds: int, root: Path
) -> None:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        names = list(variants) if i % 2 == 0 else list(reversed(variants))
        for name in names:
            path = root / f"{len(times[name])}-{name.replace(' ', '-')}.zarr"
            times[name].append(variants[name](path))
            shutil.rmtree(path)
    print(title)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"  {name:16s} median {medians[name]:.2f} s  {[round(t, 2) for t in values]}")
    first, second = medians.values()
    print(f"  ratio of medians (second / first): {second / first:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        overlap(args.rounds, Path(root))
        bulk(args.rounds, Path(root))


if __name__ == "__main__":
    main()
