"""Run the benchmark suite: ``python -m benchmarks`` (``--quick`` for a short run).

For each frame size (a scalar, 1000x3 float64 = 24 KB, 100000x3 float64 = 2.4 MB) and each
library (writebehind sync and async, writebehind with its optional checksums, netCDF4 by hand, h5py
by hand, openmmtools.storage when installed, and one bulk netCDF4 write, the format's limit)
it measures the caller's time per append (p50, p99), the whole job (open, appends, close),
writebehind's writer throughput, reading the variable back, and the peak RSS; then the toy
simulation loop's overhead; then the scale job (``scale.py``) and the latency budget of every
caller-visible operation (``latency.py``). Each scenario runs in a fresh interpreter
(see ``worker.py``); repeats are interleaved so that a busy moment hits every library alike,
and the figures are medians over the repeats. Prints markdown tables, writes
``results/<mode>.json`` and draws ``results/<mode>.png`` (needs matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name -> (entry shape, appends in a full run, appends in a quick run)
SIZES: dict[str, tuple[tuple[int, ...], int, int]] = {
    "scalar": ((), 2000, 500),
    "24KB": ((1000, 3), 2000, 500),
    "2.4MB": ((100000, 3), 200, 50),
}
LIBRARIES = [
    "writebehind",
    "writebehind-async",
    "writebehind-checksums",
    "netCDF4",
    "h5py",
    "openmmtools",
    "bulk",
    "writebehind-zarr",
    "writebehind-zarr-30ms",
    "writebehind-zarr-s3",
    "writebehind-icechunk-s3",
]
#: The libraries that write to S3: to the bucket in WRITEBEHIND_BENCH_BUCKET on the server
#: the AWS_* variables name, else to a moto server this run starts on 127.0.0.1.
S3_LIBRARIES = ("writebehind-zarr-s3", "writebehind-icechunk-s3")
TOY_LIBRARIES = ["writebehind", "writebehind-checksums", "netCDF4", "h5py", "openmmtools"]
MAX_PENDING_BYTES = 256 << 20  # writebehind's default
RSS_ALLOWANCE_MIB = 64


# -- availability --------------------------------------------------------------------------
def available(library: str) -> bool:
    if library == "writebehind-async":
        import writebehind

        return hasattr(writebehind, "AsyncStorageInterface")
    modules = {
        "h5py": ["h5py"],
        "openmmtools": ["openmmtools"],
        "writebehind-zarr": ["zarr", "obstore", "xarray"],
        "writebehind-zarr-30ms": ["zarr", "obstore", "xarray"],
        "writebehind-zarr-s3": ["zarr", "obstore", "xarray"],
        "writebehind-icechunk-s3": ["zarr", "obstore", "icechunk"],
    }.get(library, [])
    if library in S3_LIBRARIES and "WRITEBEHIND_BENCH_BUCKET" not in os.environ:
        modules = [*modules, "moto", "boto3"]
    return all(importlib.util.find_spec(module) is not None for module in modules)


@contextlib.contextmanager
def s3_server(libraries: list[str]) -> Any:
    """When an S3 library runs and WRITEBEHIND_BENCH_BUCKET is not set: a moto S3 server on
    127.0.0.1 in its own process, a bucket on it, and the AWS_* variables the workers
    inherit pointing at it (all undone at the end)."""
    if not set(libraries) & set(S3_LIBRARIES) or "WRITEBEHIND_BENCH_BUCKET" in os.environ:
        yield
        return
    import socket

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = dict(os.environ)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="writebehind-bench",
        AWS_SECRET_ACCESS_KEY="writebehind-bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ALLOW_HTTP="true",
        AWS_EC2_METADATA_DISABLED="true",
        WRITEBEHIND_BENCH_BUCKET="writebehind-bench",
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket="writebehind-bench")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield
    finally:
        server.terminate()
        server.wait()
        os.environ.clear()
        os.environ.update(saved)


# -- running workers -----------------------------------------------------------------------
def run_worker(task: dict[str, Any]) -> dict[str, Any]:
    # The workers import writebehind from this tree's src/ (not from wherever it is
    # installed), and the benchmarks package from this tree.
    path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    # One BLAS/OpenMP thread: the loop's numpy work is single-threaded, like the issue's.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(task)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark worker {task} failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(runs: list[dict[str, Any]], num: str, den: str) -> float | None:
    return _median([_get(r, num) / _get(r, den) for r in runs if _get(r, num) and _get(r, den)])


def _get(run: dict[str, Any], key: str) -> Any:
    node: Any = run
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def summarize_write(size: str, library: str, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    shape = SIZES[size][0]
    frame_bytes = 8 * math.prod(shape)
    in_flight = min(n * frame_bytes, MAX_PENDING_BYTES) / (1 << 20)
    out: dict[str, Any] = {"size": size, "library": library, "appends": n, "repeats": len(runs)}
    for key in ("p50_us", "p99_us", "whole_s", "read_s", "rss_growth_mib", "peak_rss_mib"):
        out[key] = _median([r.get(key) for r in runs])
    for key in ("writer_mb_s", "drain_mb_s", "read_mb_s", "netcdf4_read_mb_s"):
        out[key] = _median([r.get(key) for r in runs])
    out["copy_p50_us"] = _median([_get(r, "copy.p50_us") for r in runs])
    out["kept_copy_p50_us"] = _median([_get(r, "kept_copy.p50_us") for r in runs])
    out["backpressure_waits"] = _median([r.get("backpressure_waits") for r in runs])
    out["p50_over_copy"] = _ratio(runs, "p50_us", "copy.p50_us")
    out["p99_over_copy"] = _ratio(runs, "p99_us", "copy.p99_us")
    # Replaced by the ratio to the bulk scenario when it ran (see main).
    same_process = 1.0 if library == "bulk" else _ratio(runs, "whole_s", "bulk_whole_s")
    out["whole_over_bulk_same_process"] = same_process
    out["whole_over_bulk"] = same_process
    out["read_over_netcdf4"] = _ratio(runs, "read_s", "netcdf4_read_same_file_s")
    # Zarr libraries: the writer's throughput (first append to close returned) against
    # zarr's own bulk write of the same data, and one append against xarray's per frame
    out["drain_s"] = _median([r.get("drain_s") for r in runs])
    out["zarr_bulk_whole_s"] = _median([r.get("zarr_bulk_whole_s") for r in runs])
    out["throughput_over_zarr_bulk"] = _ratio(runs, "zarr_bulk_whole_s", "drain_s")
    out["xarray_append_per_frame_s"] = _median([r.get("xarray_append_per_frame_s") for r in runs])
    per_frame = out["drain_s"] / n if out["drain_s"] else None
    xarray_frame = out["xarray_append_per_frame_s"]
    out["xarray_per_frame_over_ours"] = (
        xarray_frame / per_frame if xarray_frame and per_frame else None
    )
    out["rss_bound_mib"] = in_flight + RSS_ALLOWANCE_MIB
    out["p50_us_range"] = _range([r.get("p50_us") for r in runs])
    out["whole_s_range"] = _range([r.get("whole_s") for r in runs])
    out["runs"] = runs
    return out


def _range(values: list[Any]) -> list[float] | None:
    values = [v for v in values if v is not None]
    return [min(values), max(values)] if values else None


# -- machine -------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import netCDF4
    import numpy

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
        "netCDF4": netCDF4.__version__,
        "netcdf_c": netCDF4.__netcdf4libversion__,
        "hdf5": netCDF4.__hdf5libversion__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                platform.processor(),
            )
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / (1 << 20), 1)
    except (OSError, StopIteration):
        pass
    for package in ("h5py", "openmmtools", "writebehind"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[package] = importlib.metadata.version(package)
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
        )
        info["commit"] = commit.stdout.strip()
    except OSError:
        pass
    return info


# -- printing ------------------------------------------------------------------------------
def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def write_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for size in SIZES:
        sized = [r for r in rows if r["size"] == size]
        if not sized:
            continue
        lines += [
            f"\n{size} frames ({sized[0]['appends']} appends), medians of "
            f"{sized[0]['repeats']} run(s)\n",
            "| library | p50 µs | p99 µs | p50/copy | p99/copy | whole s | whole/bulk | "
            "writer MB/s | read s | read/netCDF4 | RSS growth MiB (bound) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        copy = _median([r["copy_p50_us"] for r in sized])
        kept = _median([r["kept_copy_p50_us"] for r in sized])
        for r in sized:
            lines.append(
                f"| {r['library']} | {_fmt(r['p50_us'], '.1f')} | {_fmt(r['p99_us'], '.1f')} "
                f"| {_fmt(r['p50_over_copy'], '.2f')} | {_fmt(r['p99_over_copy'], '.2f')} "
                f"| {_fmt(r['whole_s'], '.3f')} | {_fmt(r['whole_over_bulk'], '.2f')} "
                f"| {_fmt(r['writer_mb_s'], '.0f')} | {_fmt(r['read_s'], '.3f')} "
                f"| {_fmt(r['read_over_netcdf4'], '.2f')} "
                f"| {_fmt(r['rss_growth_mib'], '.0f')} ({r['rss_bound_mib']:.0f}) |"
            )
        lines.append(f"| copy (np.array(x, copy=True)) | {_fmt(copy, '.1f')} |" + " |" * 9)
        lines.append(f"| copy, all kept (fresh memory) | {_fmt(kept, '.1f')} |" + " |" * 9)
        waits = [r["backpressure_waits"] for r in sized if r.get("backpressure_waits")]
        if waits:
            lines.append(f"\nwritebehind waited under backpressure in {waits[0]:.0f} appends.")
    return "\n".join(lines)


def zarr_table(rows: list[dict[str, Any]]) -> str:
    """The Zarr and Icechunk rows against zarr's own bulk write and xarray's append."""
    rows = [r for r in rows if r.get("zarr_bulk_whole_s")]
    if not rows:
        return ""
    lines = [
        "\nZarr and Icechunk: writer throughput (first append to close) against zarr's own "
        "bulk write of the same data to the same kind of store; xarray's "
        "`to_zarr(append_dim=...)` per frame against writebehind's writer time per frame\n",
        "| size | library | p50 µs | p99 µs | writer s | zarr bulk s | throughput/zarr bulk "
        "| xarray ms/frame | writebehind ms/frame | xarray/writebehind |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours = r["drain_s"] / r["appends"] * 1e3 if r["drain_s"] else None
        xarray_ms = r["xarray_append_per_frame_s"]
        lines.append(
            f"| {r['size']} | {r['library']} | {_fmt(r['p50_us'], '.1f')} "
            f"| {_fmt(r['p99_us'], '.1f')} | {_fmt(r['drain_s'], '.3f')} "
            f"| {_fmt(r['zarr_bulk_whole_s'], '.3f')} "
            f"| {_fmt(r['throughput_over_zarr_bulk'], '.2f')} "
            f"| {_fmt(xarray_ms * 1e3 if xarray_ms else None, '.1f')} | {_fmt(ours, '.3f')} "
            f"| {_fmt(r['xarray_per_frame_over_ours'], '.0f')} |"
        )
    return "\n".join(lines)


def toy_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        f"\nToy loop ({rows[0]['steps']} steps, 24 KB frame + energy per step), medians of "
        f"{rows[0]['repeats']} run(s)\n",
        "| library | loop s | loop storing nothing s | overhead | storing p50 µs | p99 µs |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['library']} | {r['loop_s']:.3f} | {r['loop_alone_s']:.3f} "
            f"| {100 * r['overhead']:+.1f}% | {r['store_p50_us']:.1f} | {r['store_p99_us']:.1f} |"
        )
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]], toys: list[dict[str, Any]]) -> str:
    """One compact table: p50 per append and whole job per size, and the toy loop."""
    sizes = [size for size in SIZES if any(r["size"] == size for r in rows)]
    found = {(r["size"], r["library"]): r for r in rows}
    toy = {t["library"]: t for t in toys}
    head = [f"{size} p50 µs (p99)" for size in sizes] + [f"{size} whole s" for size in sizes]
    lines = [
        "\nSummary: caller's time per append, p50 (p99); whole job; toy loop overhead\n",
        "| library | " + " | ".join(head) + " | toy loop |",
        "|---" * (len(head) + 2) + "|",
    ]
    libraries = list(dict.fromkeys(r["library"] for r in rows))
    for library in libraries:
        cells = []
        for size in sizes:
            r = found.get((size, library))
            p50 = r and r["p50_us"]
            cells.append(f"{p50:.1f} ({r['p99_us']:.0f})" if p50 else "–")
        for size in sizes:
            r = found.get((size, library))
            cells.append(_fmt(r and r["whole_s"], ".3f"))
        t = toy.get(library)
        cells.append(f"{100 * t['overhead']:+.1f}%" if t else "–")
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    copies = [
        _fmt(_median([r["copy_p50_us"] for r in rows if r["size"] == size]), ".1f")
        for size in sizes
    ]
    lines.append("| copy (np.array) | " + " | ".join(copies) + " |" + " |" * (len(sizes) + 1))
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]], toys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, checked against this run's medians."""
    found = {(r["size"], r["library"]): r for r in rows}
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, unit: str = "") -> None:
        if value is not None:
            checks.append(
                {
                    "target": name,
                    "value": value,
                    "limit": limit,
                    "met": value <= limit,
                    "unit": unit,
                }
            )

    wb = "writebehind"
    for size, p50, p99 in (("scalar", 5, 30), ("24KB", 10, 50)):
        r = found.get((size, wb))
        if r:
            check(f"{size} append p50", r["p50_us"], p50, "µs")
            check(f"{size} append p99", r["p99_us"], p99, "µs")
    r = found.get(("2.4MB", wb))
    if r:
        check("2.4MB append p50 / copy", r["p50_over_copy"], 2.0, "×")
        check("2.4MB append p99 / copy", r["p99_over_copy"], 5.0, "×")
    for size in SIZES:
        r = found.get((size, wb))
        if r:
            check(f"{size} whole job / bulk write", r["whole_over_bulk"], 1.25, "×")
            if r["rss_growth_mib"] is not None:
                check(f"{size} peak RSS growth", r["rss_growth_mib"], r["rss_bound_mib"], "MiB")
    r = found.get(("24KB", wb))
    if r:
        check("24KB read-back / netCDF4 read", r["read_over_netcdf4"], 1.2, "×")
    r = found.get(("24KB", "writebehind-async"))
    if r:
        check("24KB async append p50", r["p50_us"], 15, "µs")
    for toy in toys:
        if toy["library"] == wb:
            check("toy loop overhead", 100 * toy["overhead"], 3.0, "%")
    return checks


def targets_table(checks: list[dict[str, Any]]) -> str:
    lines = ["\nTargets (issue 4)\n", "| target | measured | limit | met |", "|---|---|---|---|"]
    for c in checks:
        lines.append(
            f"| {c['target']} | {c['value']:.2f} {c['unit']} | {c['limit']:.2f} {c['unit']} "
            f"| {'yes' if c['met'] else 'NO'} |"
        )
    return "\n".join(lines)


# -- the scale job (issue 16) ---------------------------------------------------------------
def run_scale(quick: bool, out: Path) -> dict[str, Any] | None:
    """Run ``benchmarks.scale`` in a fresh interpreter; its JSON also goes to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.scale", "--out", str(out)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    print("  scale job (benchmarks/scale.py)", flush=True)
    done = subprocess.run([*command, *(["--quick"] if quick else [])], cwd=ROOT, env=env)
    if done.returncode != 0:
        print(f"  scale job failed (exit {done.returncode})", flush=True)
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- the OpenMM reporters job (issue 14) -----------------------------------------------------
def run_openmm(quick: bool, out: Path) -> dict[str, Any] | None:
    """Run ``benchmarks.openmm`` in a fresh interpreter; its JSON also goes to ``out``."""
    missing = [m for m in ("openmm", "openmmtools") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"  OpenMM job skipped: not installed: {', '.join(missing)}", flush=True)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.openmm", "--out", str(out)]
    path = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    print("  OpenMM reporters job (benchmarks/openmm.py)", flush=True)
    done = subprocess.run([*command, *(["--quick"] if quick else [])], cwd=ROOT, env=env)
    if done.returncode != 0:
        print(f"  OpenMM job failed (exit {done.returncode})", flush=True)
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- the latency job (issue 15) -------------------------------------------------------------
def run_latency(quick: bool, out: Path) -> dict[str, Any] | None:
    """Run ``benchmarks.latency`` (each group in a fresh interpreter); JSON also to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.latency", "--out", str(out)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    print("  latency job (benchmarks/latency.py)", flush=True)
    done = subprocess.run([*command, *(["--quick"] if quick else [])], cwd=ROOT, env=env)
    if done.returncode != 0:
        print(f"  latency job failed (exit {done.returncode})", flush=True)
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# -- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer appends and one repeat")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 5; quick 1)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes")
    parser.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated")
    parser.add_argument("--appends", type=int, help="appends per scenario (all sizes)")
    parser.add_argument("--toy-steps", type=int, help="toy loop steps (default 1000; 0: skip)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    parser.add_argument("--name", help="results file stem (default: full or quick)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale job (scale.py)")
    parser.add_argument(
        "--no-openmm", action="store_true", help="skip the OpenMM reporters job (openmm.py)"
    )
    parser.add_argument(
        "--no-latency", action="store_true", help="skip the latency job (latency.py)"
    )
    args = parser.parse_args(argv)

    repeats = args.repeats or (1 if args.quick else 5)
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; choose from {list(SIZES)}")
    wanted = [lib for lib in args.libraries.split(",") if lib]
    libraries = [lib for lib in wanted if available(lib)]
    skipped = [lib for lib in wanted if lib not in libraries]
    toy_steps = args.toy_steps if args.toy_steps is not None else (300 if args.quick else 1000)
    name = args.name or ("quick" if args.quick else "full")

    def appends(size: str) -> int:
        return int(args.appends or SIZES[size][2 if args.quick else 1])

    started = time.time()
    info = machine_info()
    info["load_average_start"] = os.getloadavg()
    print(
        f"writebehind benchmarks ({name}): {repeats} repeat(s); machine: {info.get('cpu')}, "
        f"{info['cpus']} CPUs, load {info['load_average_start'][0]:.2f}",
        flush=True,
    )
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}", flush=True)

    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    toy_runs: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="writebehind-bench-") as directory,
        s3_server(libraries),
    ):
        for repeat in range(repeats):
            for size in sizes:
                shape, n = SIZES[size][0], appends(size)
                # Rotate the order so that no library always runs first (or last).
                order = libraries[repeat % len(libraries) :] + libraries[: repeat % len(libraries)]
                for library in order:
                    task = {
                        "kind": "write",
                        "library": library,
                        "shape": shape,
                        "n": n,
                        "dir": directory,
                        "read_repeats": 1 if args.quick else 3,
                    }
                    runs.setdefault((size, library), []).append(run_worker(task))
                    print(f"  [{repeat + 1}/{repeats}] {size:>6} {library}", flush=True)
            if toy_steps:
                for library in [lib for lib in TOY_LIBRARIES if lib in libraries]:
                    task = {
                        "kind": "toy",
                        "library": library,
                        "steps": toy_steps,
                        "dir": directory,
                        "toy_repeats": 2 if args.quick else 5,
                    }
                    toy_runs.setdefault(library, []).append(run_worker(task))
                    print(f"  [{repeat + 1}/{repeats}]    toy {library}", flush=True)

    scale = None if args.no_scale else run_scale(args.quick, args.out / f"scale-{name}.json")
    openmm_job = (
        None if args.no_openmm else run_openmm(args.quick, args.out / f"openmm-{name}.json")
    )
    latency = (
        None if args.no_latency else run_latency(args.quick, args.out / f"latency-{name}.json")
    )

    rows = [
        summarize_write(size, library, appends(size), runs[(size, library)])
        for size in sizes
        for library in libraries
    ]
    # The job against the bulk scenario, run the same way (a fresh process after a warm-up),
    # rather than the bulk write that follows it in its process: by then the job's freed
    # memory and deleted pages are there for the taking, which favours the bulk write.
    bulk_rows = {r["size"]: r for r in rows if r["library"] == "bulk" and r["whole_s"]}
    for r in rows:
        if r["size"] in bulk_rows:
            r["whole_over_bulk"] = r["whole_s"] / bulk_rows[r["size"]]["whole_s"]
    toys = [
        {
            "library": library,
            "steps": toy_steps,
            "repeats": len(r),
            "loop_s": statistics.median(x["loop_s"] for x in r),
            "loop_alone_s": statistics.median(x["loop_alone_s"] for x in r),
            "overhead": statistics.median(x["overhead"] for x in r),
            "store_p50_us": statistics.median(x["store_p50_us"] for x in r),
            "store_p99_us": statistics.median(x["store_p99_us"] for x in r),
            "runs": r,
        }
        for library, r in toy_runs.items()
    ]
    checks = targets(rows, toys)
    from .checksums import checksums_table, compare_rows  # it imports this module

    checksums_cost = compare_rows(rows, toys)
    info["load_average_end"] = os.getloadavg()
    info["seconds"] = round(time.time() - started, 1)
    report = "\n".join(
        [
            write_table(rows),
            zarr_table(rows),
            toy_table(toys),
            summary_table(rows, toys),
            targets_table(checks),
            checksums_table(checksums_cost),
        ]
    )
    print(report)

    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{name}.json"
    results = {
        "machine": info,
        "repeats": repeats,
        "skipped": skipped,
        "write": rows,
        "toy": toys,
        "targets": checks,
        "checksums": checksums_cost,
        "scale": scale,
        "openmm": openmm_job,
        "latency": latency,
    }
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    print(
        f"\nresults: {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}"
    )
    if not args.no_chart:
        try:
            from .chart import draw
        except ImportError as exc:
            print(f"no chart ({exc}); install the bench extra: pip install -e '.[bench]'")
        else:
            png = draw(results, args.out / f"{name}.png")
            print(f"chart: {png}")
    return 0
