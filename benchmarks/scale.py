"""How writebehind's costs grow with the file (issue 16): the scale job of ``python -m
benchmarks``.

Usage: ``.venv/bin/python -m benchmarks.scale [--quick] [--sizes 0.1,1,10] [--repeats 3]
[--create 100,1000,10000] [--reopen 3000] [--long-gb 2] [--guard journal,copy] [--chunk-kib N]
[--out FILE]``

For each size, a new file in a temporary directory beside the repository is filled with
frames of 24 KB (1000 atoms, float64) and flushed; then, median of ``--repeats``:

- ``data_flush_ms``: a flush of one more frame (nothing structural);
- ``new_variable_flush_ms``: a flush carrying one frame and one new variable;
- ``new_attribute_flush_ms``: a flush carrying one frame and one new attribute;
- ``guard_bytes``: the extra disk the structural flush used while it ran: the metadata
  journal's size (``journal``), or the file's (``copy``: the whole-file rollback copy that
  the journal replaced, forced by a journal limit of 0 bytes; what the code did before).

``create``: for each N, a new file gets N variables of one entry of 8 float64 each (in
groups of 100), created in one flush: the caller's time plus the flush, the file's size
against issue 14's bound for short runs (2x the raw bytes plus 64 KiB a variable), and the
time to reopen it read-only (median of ``--repeats``).

``reopen`` (issue 16: at most 0.5 s for 3,000 variables): a file of ``--reopen`` variables
of two entries of 8 float64 each, made as users do, in groups of 100 (of half of them, for
fewer than 200) and all in one group (``flat``); then, median of ``--repeats``, the time
to open it (``"r"`` and ``"a"``), read one variable and close it, wall clock and this
process's CPU (the machine may be shared), beside netCDF4's own open and close of the file
(``netcdf4_open_close``: what netCDF4-python pays, writebehind's scan aside), netCDF-C's
alone (``netcdf_c_open_close``: ``nc_open`` and ``nc_close``, the floor of any netCDF reader
of the layout) and netCDF-C's with every variable's attributes read
(``netcdf_c_open_attrs_close``: the floor of a reader that learns every variable at open);
each also per variable, in CPU microseconds.

``long_run``: ``--long-gb`` of 24 KB frames, then a tenth of that of 2.4 MB frames: the
caller's append p50 and p99 in each tenth of the run, the whole job's rate (appends and
close), and reading the variable back.

``--chunk-kib`` changes the chunk target of the driver and the engine together (a knob for
measuring the choice of 48 KiB; files keep the shape they were made with).
``--quick`` is a short run (0.1 GB, 100 and 1,000 variables, a reopen of 1,000, a 0.2 GB
long run).
Prints one JSON document (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import writebehind
from writebehind.drivers.netcdf import backend as netcdf
from writebehind.drivers.netcdf import hdf5 as _hdf5
from writebehind.drivers.netcdf import metajournal as _metajournal

FRAME_SHAPE = (1000, 3)
FRAME_BYTES = 8 * FRAME_SHAPE[0] * FRAME_SHAPE[1]


def _ms(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1e3


def _guard_bytes(store: writebehind.StorageInterface, path: Path, guard: str) -> int:
    if guard == "copy":
        return path.stat().st_size
    return int(store.storage_driver.backend._metadata_journal.last_size)  # type: ignore[union-attr]


def flush_costs(path: Path, gigabytes: float, repeats: int, guard: str) -> dict[str, Any]:
    """Fill a new file with ``gigabytes`` of frames, then time the flushes."""
    frames = int(gigabytes * 1e9) // FRAME_BYTES
    positions = np.random.default_rng(0).random(FRAME_SHAPE)
    limit = _metajournal.JOURNAL_LIMIT_BYTES
    if guard == "copy":
        _metajournal.JOURNAL_LIMIT_BYTES = 0  # every structural flush copies the file
    try:
        with writebehind.open(path, "w") as store:
            traj = store.traj
            for _ in range(frames):
                traj.positions.append(positions)
            store.flush()
            traj.positions.append(positions)
            store.flush()  # the first flush after filling (chunk indexes found)
            data, variable, attribute, guard_bytes = [], [], [], []
            for k in range(repeats):

                def frame() -> None:
                    traj.positions.append(positions)
                    store.flush()

                def new_variable(k: int = k) -> None:
                    traj.positions.append(positions)
                    store[f"extra/v{k}"].append(float(k))
                    store.flush()

                def new_attribute(k: int = k) -> None:
                    traj.positions.append(positions)
                    traj.positions.add_metadata(f"note{k}", f"attribute {k}")
                    store.flush()

                data.append(_ms(frame))
                variable.append(_ms(new_variable))
                guard_bytes.append(_guard_bytes(store, path, guard))
                attribute.append(_ms(new_attribute))
                guard_bytes.append(_guard_bytes(store, path, guard))
            size = path.stat().st_size
    finally:
        _metajournal.JOURNAL_LIMIT_BYTES = limit
        path.unlink(missing_ok=True)
    return {
        "guard": guard,
        "file_gb": round(size / 1e9, 3),
        "data_flush_ms": round(statistics.median(data), 2),
        "new_variable_flush_ms": round(statistics.median(variable), 2),
        "new_attribute_flush_ms": round(statistics.median(attribute), 2),
        "guard_bytes": max(guard_bytes),
        "runs_ms": {
            "data": [round(t, 2) for t in data],
            "new_variable": [round(t, 2) for t in variable],
            "new_attribute": [round(t, 2) for t in attribute],
        },
    }


def create_variables(path: Path, variables: int, repeats: int) -> dict[str, Any]:
    """Create ``variables`` variables of one small entry each in one flush; reopen."""
    entry = np.arange(8.0)
    started = time.perf_counter()
    with writebehind.open(path, "w") as store:
        opened = time.perf_counter()
        for n in range(variables):
            store[f"g{n // 100}/v{n}"].append(entry)
        enqueued = time.perf_counter()
        store.flush()
        flushed = time.perf_counter()
    closed = time.perf_counter()
    reopen = []
    for _ in range(repeats):
        reopen.append(_ms(lambda: writebehind.open(path, "r").close()))
    size = path.stat().st_size
    path.unlink()
    raw = variables * entry.nbytes
    bound = 2 * raw + variables * 64 * 1024
    return {
        "variables": variables,
        "open_s": round(opened - started, 3),
        "appends_s": round(enqueued - opened, 3),
        "flush_s": round(flushed - enqueued, 3),
        "create_s": round(flushed - opened, 3),
        "close_s": round(closed - flushed, 3),
        "reopen_s": round(statistics.median(reopen) / 1e3, 3),
        "file_mb": round(size / 1e6, 2),
        "bytes_per_variable": size // variables,
        "short_run_bound_mb": round(bound / 1e6, 2),
        "within_bound": size <= bound,
    }


def _wall_and_cpu(action: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def reopen_variables(path: Path, variables: int, per_group: int, repeats: int) -> dict[str, Any]:
    """Make ``variables`` variables of two entries of 8 float64 each (``per_group`` to a
    group), then time reopening the file, reading one variable, closing it."""
    entry = np.arange(8.0)
    names = [
        f"g{n // per_group}/v{n}" if per_group < variables else f"v{n}" for n in range(variables)
    ]
    started = time.perf_counter()
    with writebehind.open(path, "w") as store:
        for name in names:
            store[name].append(entry)
            store[name].append(entry)
    created = time.perf_counter() - started
    middle = names[len(names) // 2]

    def reopen(mode: str) -> Callable[[], None]:
        def action() -> None:
            with writebehind.open(path, mode) as store:
                assert store[middle].read().shape == (2, 8)

        return action

    def netcdf4_open_close() -> None:
        netCDF4_dataset(path).close()

    runs: dict[str, list[tuple[float, float]]] = {
        "r": [],
        "a": [],
        "netcdf4_open_close": [],
        "netcdf_c_open_close": [],
        "netcdf_c_open_attrs_close": [],
    }
    for _ in range(repeats):  # interleaved: the machine's load falls on all alike
        runs["r"].append(_wall_and_cpu(reopen("r")))
        runs["a"].append(_wall_and_cpu(reopen("a")))
        runs["netcdf4_open_close"].append(_wall_and_cpu(netcdf4_open_close))
        runs["netcdf_c_open_close"].append(_wall_and_cpu(lambda: netcdf_c_open(path, False)))
        runs["netcdf_c_open_attrs_close"].append(_wall_and_cpu(lambda: netcdf_c_open(path, True)))
    size = path.stat().st_size
    path.unlink()
    row: dict[str, Any] = {
        "variables": variables,
        "layout": "flat" if per_group >= variables else f"groups of {per_group}",
        "create_and_close_s": round(created, 3),
        "file_mb": round(size / 1e6, 1),
    }
    for name, times in runs.items():
        key = name if name.startswith("netcdf") else f"reopen_{name}_read_close"
        row[f"{key}_s"] = round(statistics.median(t[0] for t in times), 3)
        row[f"{key}_cpu_s"] = round(statistics.median(t[1] for t in times), 3)
        row[f"{key}_cpu_us_per_variable"] = round(
            statistics.median(t[1] for t in times) / variables * 1e6, 1
        )
    return row


def netcdf_c_open(path: Path, attributes: bool) -> None:
    """Open and close ``path`` with netCDF-C alone (``nc_open``, ``nc_close``, through
    ctypes): the floor of any netCDF reader of the file. With ``attributes``, ask each
    variable its number of attributes in between, which makes netCDF-C read every
    variable's attributes and match its dimension scales (it reads them lazily): the floor
    of a reader that learns every variable's metadata at open, as netCDF4-python does."""
    nc = _netcdf_c()
    ncid = ctypes.c_int()
    if nc.nc_open(os.fsencode(path), 0, ctypes.byref(ncid)) != 0:
        raise OSError(f"nc_open failed on {path}")
    try:
        if attributes:
            groups = [ncid.value]
            while groups:
                group = groups.pop()
                groups += _ids(nc.nc_inq_grps, group)
                count = ctypes.c_int()
                for varid in _ids(nc.nc_inq_varids, group):
                    if nc.nc_inq_varnatts(group, varid, ctypes.byref(count)) != 0:
                        raise OSError(f"nc_inq_varnatts failed on {path}")
    finally:
        nc.nc_close(ncid)


def _ids(inquire: Any, group: int) -> list[int]:
    """What ``nc_inq_grps`` or ``nc_inq_varids`` lists of ``group``."""
    count = ctypes.c_int()
    if inquire(group, ctypes.byref(count), None) != 0:
        raise OSError("netCDF-C refused to list a group")
    ids = (ctypes.c_int * max(1, count.value))()
    inquire(group, ctypes.byref(count), ids)
    return list(ids[: count.value])


def _netcdf_c() -> Any:
    """The netCDF-C library netCDF4 loaded (the same one writebehind calls)."""
    for candidate in _hdf5.loaded_library_paths("libnetcdf"):
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    raise OSError("cannot find the netCDF-C library netCDF4 loaded")


def _tenths(times_ns: np.ndarray) -> list[dict[str, float]]:
    return [
        {
            "p50_us": round(float(np.percentile(part, 50)) / 1e3, 2),
            "p99_us": round(float(np.percentile(part, 99)) / 1e3, 2),
        }
        for part in np.array_split(times_ns, 10)
    ]


def long_run(path: Path, gigabytes: float, shape: tuple[int, ...]) -> dict[str, Any]:
    """Append ``gigabytes`` of frames of ``shape``: per-append times in each tenth."""
    frame = np.random.default_rng(1).random(shape)
    frames = max(10, int(gigabytes * 1e9) // frame.nbytes)
    times = np.empty(frames, dtype=np.int64)
    for _ in range(20):  # warm the allocator with blocks of the frame's size
        np.copy(frame)
    clock = time.perf_counter_ns
    started = time.perf_counter()
    with writebehind.open(path, "w") as store:
        positions = store.traj.positions
        for i in range(frames):
            t = clock()
            positions.append(frame)
            times[i] = clock() - t
    job = time.perf_counter() - started
    with writebehind.open(path, "r") as store:
        read = _ms(lambda: store.traj.positions.read()) / 1e3
    with netCDF4_dataset(path) as ds:
        chunks = ds["traj/positions"].chunking()
    size = path.stat().st_size
    path.unlink()
    return {
        "frame_bytes": frame.nbytes,
        "frames": frames,
        "chunk_shape": chunks,
        "file_gb": round(size / 1e9, 3),
        "append_p50_us": round(float(np.percentile(times, 50)) / 1e3, 2),
        "append_p99_us": round(float(np.percentile(times, 99)) / 1e3, 2),
        "tenths": _tenths(times),
        "job_mb_per_s": round(frames * frame.nbytes / 1e6 / job, 1),
        "read_mb_per_s": round(frames * frame.nbytes / 1e6 / read, 1),
    }


def netCDF4_dataset(path: Path) -> Any:
    import netCDF4

    return netCDF4.Dataset(path)


def set_chunk_target(kib: int) -> None:
    """Make the driver chunk by ``kib`` KiB (the engine stages by what the driver says)."""
    netcdf.CHUNK_TARGET_BYTES = kib << 10


def run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "frame_bytes": FRAME_BYTES,
        "chunk_target_bytes": netcdf.CHUNK_TARGET_BYTES,
        "sizes": [],
        "create": [],
        "reopen": [],
        "long_run": [],
    }
    path = directory / "scale.nc"
    for gigabytes in (float(size) for size in args.sizes.split(",") if size):
        for guard in args.guard.split(","):
            row = flush_costs(path, gigabytes, args.repeats, guard)
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
    for variables in (int(n) for n in args.create.split(",") if n):
        row = create_variables(path, variables, args.repeats)
        results["create"].append(row)
        print(json.dumps(row), flush=True)
    for variables in (int(n) for n in args.reopen.split(",") if n):
        for per_group in (min(100, max(1, variables // 2)), variables):
            row = reopen_variables(path, variables, per_group, args.repeats)
            results["reopen"].append(row)
            print(json.dumps(row), flush=True)
    if args.long_gb:
        for gigabytes, shape in ((args.long_gb, FRAME_SHAPE), (args.long_gb / 10, (100000, 3))):
            row = long_run(path, gigabytes, shape)
            results["long_run"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "tenths"}), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--sizes", help="file sizes in GB (default 0.1,1,10; quick 0.1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guard", default="journal", help="journal, copy or both")
    parser.add_argument("--create", help="variable counts (default 100,1000,10000)")
    parser.add_argument("--reopen", help="variable counts to reopen (default 3000)")
    parser.add_argument("--long-gb", type=float, help="long run in GB (default 2; quick 0.2)")
    parser.add_argument("--chunk-kib", type=int, help="chunk target (default: the driver's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = "0.1" if args.quick else "0.1,1,10"
    if args.create is None:
        args.create = "100,1000" if args.quick else "100,1000,10000"
    if args.reopen is None:
        args.reopen = "1000" if args.quick else "3000"
    if args.long_gb is None:
        args.long_gb = 0.2 if args.quick else 2.0
    if args.chunk_kib:
        set_chunk_target(args.chunk_kib)
    here = Path(__file__).resolve().parent.parent
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="writebehind-scale-", dir=here) as tmp:
        results = run(args, Path(tmp))
    results["seconds"] = round(time.time() - started, 1)
    results["load_average_end"] = os.getloadavg()
    results["statvfs_free_gb"] = round(
        os.statvfs(here).f_bavail * os.statvfs(here).f_frsize / 1e9, 1
    )
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
