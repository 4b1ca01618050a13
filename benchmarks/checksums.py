"""What the Fletcher32 checksums cost: ``python -m benchmarks.checksums`` (``--quick``).

``NetCDFIODriver(path, mode, checksums=True)`` (``writebehind.open(..., checksums=True)``)
creates numeric appendable variables with HDF5's Fletcher32 filter (a checksum per chunk,
verified on every read); by default it is off, because of what this measures. For each
frame size of the suite (a scalar, 24 KB, 2.4 MB; 2000, 2000 and 200 appends) this runs
writebehind's append job with and without the checksums, each job in a fresh process
(``worker.py``, without the bulk and copy baselines), the two alternating which goes first,
``--repeats`` times; and reports the medians, their spread (min-max over the repeats) and
the cost: the extra time with the checksums, as the median over the repeats of each pair's
ratio (the two jobs of a pair ran one after the other, so a busy spell of the shared machine
tends to hit both), with the spread of those ratios and in how many pairs the checksums were
slower (a real cost shows in nearly all of them; noise in about half).

Figures: the caller's time per append (p50, p99), the whole job (open, appends, close), the
writer's throughput (MB/s over its time inside the driver's writes, where HDF5 computes the
checksums; and MB/s from the first append to close() returning, which is what the caller
waits for at close), reading the variable back (writebehind's read and netCDF4's, each
verifying every chunk's checksum when there is one) and the peak RSS growth. The caller's
cost is the p50, the p99 and the whole job; ``caller_over_limit`` in the JSON lists those
that cost more than 10%.

Writes ``results/checksums.json`` (``--quick``: ``results/checksums-quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .run import HERE, ROOT, SIZES, machine_info, run_worker

WITH, WITHOUT = "writebehind-checksums", "writebehind"  # the suite's library names
LIMIT = 0.10  # the issue: on by default unless it costs the caller more than 10% (it does)

#: key -> (label, format, whether higher is better: a rate, whose cost is its inverse's);
#: the scalar job writes 16 KB, so its rates are small.
FIGURES: dict[str, tuple[str, str, bool]] = {
    "p50_us": ("caller p50 µs", ".1f", False),
    "p99_us": ("caller p99 µs", ".1f", False),
    "whole_s": ("whole job s", ".3f", False),
    "writer_mb_s": ("writer MB/s (in the driver)", "rate", True),
    "drain_mb_s": ("MB/s, first append to close", "rate", True),
    "read_mb_s": ("read MB/s (writebehind)", "rate", True),
    "netcdf4_read_mb_s": ("read MB/s (netCDF4)", "rate", True),
    "rss_growth_mib": ("peak RSS growth MiB", ".0f", False),
}
CALLER_FIGURES = ("p50_us", "p99_us", "whole_s")


def compare(with_runs: list[dict[str, Any]], without_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians, spreads and costs of each figure; runs of the same index form a pair.

    The cost is the extra time the checksums take: ``with / without - 1`` for a time,
    ``without / with - 1`` for a rate (MB/s); the RSS growth's is its extra memory.
    """
    out: dict[str, Any] = {"repeats": min(len(with_runs), len(without_runs))}
    for key, (_, _, is_rate) in FIGURES.items():
        with_values = [r[key] for r in with_runs if r.get(key) is not None]
        without_values = [r[key] for r in without_runs if r.get(key) is not None]
        if not with_values or not without_values:
            continue
        costs = [
            (b / a if is_rate else a / b) - 1.0
            for a, b in (
                (w.get(key), o.get(key)) for w, o in zip(with_runs, without_runs, strict=False)
            )
            if a and b
        ]
        with_median = statistics.median(with_values)
        without_median = statistics.median(without_values)
        out[key] = {
            "with": with_median,
            "with_range": [min(with_values), max(with_values)],
            "without": without_median,
            "without_range": [min(without_values), max(without_values)],
            "cost": statistics.median(costs) if costs else None,
            "cost_range": [min(costs), max(costs)] if costs else None,
            # how many pairs the checksums made slower: a real cost shows in (nearly) all
            "pairs_slower": sum(cost > 0 for cost in costs),
            "pairs": len(costs),
            "cost_of_medians": (
                (without_median / with_median if is_rate else with_median / without_median) - 1
            ),
        }
    out["caller_over_limit"] = [
        key for key in CALLER_FIGURES if key in out and (out[key]["cost"] or 0.0) > LIMIT
    ]
    return out


def compare_rows(rows: list[dict[str, Any]], toys: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison for the main suite's rows (``run.py``), when both settings ran."""
    found = {(r["size"], r["library"]): r for r in rows}
    sizes = {
        size: compare(found[(size, WITH)]["runs"], found[(size, WITHOUT)]["runs"])
        for size in SIZES
        if (size, WITH) in found and (size, WITHOUT) in found
    }
    out: dict[str, Any] = {"sizes": sizes}
    toy = {t["library"]: t for t in toys}
    if WITH in toy and WITHOUT in toy:
        out["toy_overhead"] = {"with": toy[WITH]["overhead"], "without": toy[WITHOUT]["overhead"]}
    return out


def _number(value: float, spec: str) -> str:
    if spec == "rate":
        return format(value, ".0f" if value >= 100 else ".2g")
    return format(value, spec)


def _cell(figure: dict[str, Any], side: str, spec: str) -> str:
    low, high = figure[f"{side}_range"]
    return f"{_number(figure[side], spec)} ({_number(low, spec)}–{_number(high, spec)})"


def checksums_table(comparison: dict[str, Any]) -> str:
    """Markdown: each figure with and without the checksums, and what they cost."""
    sizes = comparison.get("sizes") or {}
    if not sizes:
        return ""
    repeats = next(iter(sizes.values()))["repeats"]
    lines = [
        f"\nChecksums (Fletcher32) on and off: medians (min–max) of {repeats} run(s); cost: "
        "the extra time with them, median (min…max) of the interleaved pairs, and in how many "
        "pairs they were slower\n",
        "| size | figure | with checksums | without | cost |",
        "|---|---|---|---|---|",
    ]
    over = []
    for size, figures in sizes.items():
        for key, (label, spec, _) in FIGURES.items():
            figure = figures.get(key)
            if figure is None:
                continue
            cost = "–"
            if figure["cost"] is not None:
                low, high = figure["cost_range"]
                cost = (
                    f"{figure['cost']:+.0%} ({low:+.0%}…{high:+.0%}; "
                    f"{figure['pairs_slower']}/{figure['pairs']} slower)"
                )
            lines.append(
                f"| {size} | {label} | {_cell(figure, 'with', spec)} "
                f"| {_cell(figure, 'without', spec)} | {cost} |"
            )
        over += [f"{size} {FIGURES[key][0]}" for key in figures["caller_over_limit"]]
    toy = comparison.get("toy_overhead")
    if toy:
        lines.append(
            f"\nToy loop overhead: {100 * toy['with']:+.1f}% with checksums, "
            f"{100 * toy['without']:+.1f}% without."
        )
    verdict = ", ".join(over) if over else "nowhere"
    lines.append(f"\nThe caller's cost (p50, p99, whole job) is over {LIMIT:.0%} in: {verdict}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checksums", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer appends, 2 repeats")
    parser.add_argument("--repeats", type=int, help="pairs of jobs per size (default 7)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated sizes")
    parser.add_argument("--appends", type=int, help="appends per job (all sizes)")
    parser.add_argument("--out", type=Path, help="the JSON file (default results/checksums.json)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 7)
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = set(sizes) - set(SIZES)
    if unknown:
        parser.error(f"unknown sizes {sorted(unknown)}; choose from {list(SIZES)}")
    appends = {size: args.appends or SIZES[size][2 if args.quick else 1] for size in sizes}
    out = args.out or HERE / "results" / (
        "checksums-quick.json" if args.quick else "checksums.json"
    )

    started = time.time()
    info = machine_info()
    info["load_average_start"] = os.getloadavg()
    print(
        f"checksums on and off: {repeats} pair(s) of jobs per size; machine: {info.get('cpu')}, "
        f"{info['cpus']} CPUs, load {info['load_average_start'][0]:.2f}",
        flush=True,
    )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {WITH: [], WITHOUT: []} for s in sizes}
    with tempfile.TemporaryDirectory(prefix="writebehind-checksums-") as directory:
        for repeat in range(repeats):
            for index, size in enumerate(sizes):
                # Each setting goes first in every other pair.
                order = [WITH, WITHOUT] if (repeat + index) % 2 == 0 else [WITHOUT, WITH]
                for library in order:
                    task = {
                        "kind": "write",
                        "library": library,
                        "shape": SIZES[size][0],
                        "n": appends[size],
                        "dir": directory,
                        "read_repeats": 1 if args.quick else 3,
                        "baselines": False,
                    }
                    runs[size][library].append(run_worker(task))
                print(f"  [{repeat + 1}/{repeats}] {size:>6} {' then '.join(order)}", flush=True)

    comparison = {"sizes": {size: compare(runs[size][WITH], runs[size][WITHOUT]) for size in sizes}}
    print(checksums_table(comparison))
    sources = sorted({r["writebehind_file"] for s in runs.values() for r in s[WITH] + s[WITHOUT]})
    print(f"\nwritebehind measured: {', '.join(sources)}")
    info["load_average_end"] = os.getloadavg()
    info["seconds"] = round(time.time() - started, 1)
    info["writebehind_files"] = sources
    results = {
        "command": "python -m benchmarks.checksums" + (" --quick" if args.quick else ""),
        "machine": info,
        "repeats": repeats,
        "appends": appends,
        "limit": LIMIT,
        "caller_over_limit": [
            f"{size} {key}"
            for size, figures in comparison["sizes"].items()
            for key in figures["caller_over_limit"]
        ],
        **comparison,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    resolved = out.resolve()
    shown = resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else out
    print(f"results: {shown} ({info['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
