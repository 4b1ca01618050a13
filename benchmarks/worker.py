"""One scenario in a fresh interpreter: ``python -m benchmarks.worker '<json task>'``.

Each scenario runs in its own process so that one library's threads, caches and freed
memory do not affect the next one, and so that its peak RSS is its own. The baselines its
ratios are taken against (the copy floor, one bulk netCDF4 write of the same data,
netCDF4's own read of the same file, the loop storing nothing) run in the same process,
after the scenario's peak RSS is recorded. The result is printed as one JSON line.
``"baselines": false`` in a write task skips the bulk write and the copy floors
(``python -m benchmarks.checksums`` compares two writebehind settings with each other).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
from typing import Any

import numpy as np

from . import workloads as w

_MIB = 1 << 20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _percentiles(latencies_ns: np.ndarray[Any, Any]) -> dict[str, float]:
    if latencies_ns.size == 0:
        return {}
    p50, p99 = np.percentile(latencies_ns, [50, 99]) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "max_us": float(latencies_ns.max() / 1e3)}


def run_write(task: dict[str, Any]) -> dict[str, Any]:
    library, shape, n = task["library"], tuple(task["shape"]), task["n"]
    directory = task["dir"]
    path = os.path.join(directory, f"{library}.nc")
    frame = w.make_frame(shape)
    # Warm up: imports, HDF5's initialisation and first-call costs are not the job's.
    warm_path = os.path.join(directory, f"{library}-warmup.nc")
    if library == "bulk":
        w.write_bulk(warm_path, w.bulk_data(frame, 2))
    else:
        w.WRITERS[library](warm_path, w.make_frame(shape), 2)
    w.READERS[library](warm_path)
    w.remove(warm_path)
    zarr_library = library in w.ZARR_LIBRARIES
    if zarr_library:
        w.remove_zarr(w.zarr_target(warm_path, library))
    data = w.bulk_data(frame, n) if library == "bulk" else None
    gc.collect()
    rss_before = _rss_bytes()
    exact_peak = _reset_peak_rss()
    if library == "bulk":
        assert data is not None
        result = w.write_bulk(path, data)
    else:
        result = w.WRITERS[library](path, frame, n)
    peak = _peak_rss_bytes()
    out: dict[str, Any] = {
        "whole_s": result.whole_seconds,
        "rss_before_mib": rss_before / _MIB,
        "peak_rss_mib": peak / _MIB,
        "rss_growth_mib": (peak - rss_before) / _MIB if exact_peak else None,
        "backpressure_waits": result.backpressure_waits,
        **_percentiles(result.latencies_ns),
        **_writer_figures(result),
    }
    if library.startswith("writebehind"):  # the source measured: this tree's, or installed
        import writebehind

        out["writebehind_file"] = writebehind.__file__
    del data
    # Reading back: the library's own read, and netCDF4's read of the same file, alternated.
    reader = w.READERS[library]
    group = w.NETCDF_GROUP.get(library)
    own, raw = [], []
    for _ in range(task.get("read_repeats", 3)):
        own.append(w.timed(lambda: reader(path)))
        if not zarr_library:  # a Zarr store is no netCDF file
            raw.append(w.timed(lambda: w.read_netcdf4(path, group)))
    out["read_s"] = statistics.median(own)
    data_bytes = n * np.asarray(frame).nbytes
    out["read_mb_s"] = data_bytes / out["read_s"] / 1e6
    if raw:
        out["netcdf4_read_same_file_s"] = statistics.median(raw)
        out["netcdf4_read_mb_s"] = data_bytes / out["netcdf4_read_same_file_s"] / 1e6
    if zarr_library and task.get("baselines", True):
        # zarr's own bulk write of the same data to the same kind of store, and what users
        # do today (xarray's to_zarr(append_dim=...) of each frame, over a few frames)
        bulk = w.write_zarr_bulk(path, w.bulk_data(frame, n), library)
        out["zarr_bulk_whole_s"] = bulk.whole_seconds
        # (fewer frames for the 30 ms store: each to_zarr makes a dozen requests or more)
        frames = min(n, task.get("xarray_frames", 5 if library == w.LATENCY_LIBRARY else 20))
        out["xarray_append_per_frame_s"] = w.xarray_append_per_frame(path, frame, frames, library)
    if zarr_library:
        w.remove_zarr(w.zarr_target(path, library))
    # In-process baselines: one bulk write of the same data, the copy floors.
    if library != "bulk" and task.get("baselines", True):
        bulk_path = os.path.join(directory, f"{library}-bulk.nc")
        out["bulk_whole_s"] = w.write_bulk(bulk_path, w.bulk_data(frame, n)).whole_seconds
        w.remove(bulk_path)
        out["copy"] = _percentiles(w.copy_floor(frame, n))
        out["kept_copy"] = _percentiles(w.kept_copy_floor(frame, n))
    w.remove(path)
    return out


def _writer_figures(result: w.WriteResult) -> dict[str, Any]:
    """What writebehind's writer sustained, in MB/s: ``writer_mb_s`` over its time inside
    the driver's writes, ``drain_mb_s`` from the first append to close() returning."""
    written = result.bytes_written
    if not written:
        return {}
    out: dict[str, Any] = {"bytes_written": written}
    if result.writer_seconds:
        out["writer_s"] = result.writer_seconds
        out["writer_mb_s"] = written / result.writer_seconds / 1e6
    if result.drain_seconds:
        out["drain_s"] = result.drain_seconds
        out["drain_mb_s"] = written / result.drain_seconds / 1e6
    return out


def run_toy(task: dict[str, Any]) -> dict[str, Any]:
    """The toy loop with ``library`` and with nothing stored, alternated in this process."""
    library, steps = task["library"], task["steps"]
    path = os.path.join(task["dir"], f"toy-{library}.nc")
    alone, stored, store_ns = [], [], []
    w.toy_loop("none", path, max(10, steps // 10))  # warm up
    w.toy_loop(library, path, max(10, steps // 10))
    for _ in range(task.get("toy_repeats", 3)):
        alone.append(w.toy_loop("none", path, steps))
        latencies = np.empty(steps, dtype=np.int64)
        stored.append(w.toy_loop(library, path, steps, latencies))
        store_ns.append(latencies)
        w.remove(path)
    store = _percentiles(np.concatenate(store_ns))
    # Each loop against the loop storing nothing just before it, so a slow spell of the
    # (shared) machine cancels out rather than lands on one side.
    pairs = [s / a - 1.0 for s, a in zip(stored, alone, strict=True)]
    return {
        "loop_s": statistics.median(stored),
        "loop_alone_s": statistics.median(alone),
        "overhead": statistics.median(pairs),
        "overheads": pairs,
        "store_p50_us": store["p50_us"],
        "store_p99_us": store["p99_us"],
    }


def main() -> None:
    task = json.loads(sys.argv[1])
    result = run_toy(task) if task["kind"] == "toy" else run_write(task)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
