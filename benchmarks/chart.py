"""Draw the results of a run as one PNG (needs matplotlib, in the ``bench`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "writebehind": "#1b7837",
    "writebehind-async": "#5aae61",
    "writebehind-checksums": "#a6dba0",
    "netCDF4": "#2166ac",
    "h5py": "#762a83",
    "openmmtools": "#b2182b",
    "bulk": "#878787",
    "copy": "#bababa",
}


def draw(results: dict[str, Any], path: Path) -> Path:
    rows = results["write"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    toys = results.get("toy", [])
    columns = len(sizes) + (1 if toys else 0)
    fig, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 7.5), squeeze=False)
    for col, size in enumerate(sizes):
        sized = [r for r in rows if r["size"] == size]
        appenders = [r for r in sized if r["p50_us"] is not None]
        names = [r["library"] for r in appenders] + ["copy"]
        p50 = [r["p50_us"] for r in appenders] + [_copy(sized)]
        p99 = [r["p99_us"] for r in appenders] + [None]
        ax = axes[0][col]
        xs = range(len(names))
        ax.bar(xs, p50, color=[COLORS.get(n, "#444") for n in names], label="p50")
        ax.scatter(
            [x for x, v in zip(xs, p99, strict=True) if v is not None],
            [v for v in p99 if v is not None],
            marker="_",
            s=300,
            color="black",
            label="p99",
        )
        ax.set_yscale("log")
        ax.set_title(f"{size}: caller's time per append")
        ax.set_ylabel("µs (log)")
        ax.set_xticks(list(xs), names, rotation=35, ha="right")
        ax.legend(loc="upper left", fontsize=8)
        ax = axes[1][col]
        names = [r["library"] for r in sized]
        ax.bar(
            range(len(sized)),
            [r["whole_s"] for r in sized],
            color=[COLORS.get(n, "#444") for n in names],
        )
        ax.set_title(f"{size}: whole job ({sized[0]['appends']} appends)")
        ax.set_ylabel("s")
        ax.set_xticks(range(len(sized)), names, rotation=35, ha="right")
    if toys:
        ax = axes[0][-1]
        names = [t["library"] for t in toys]
        ax.bar(
            range(len(toys)),
            [100 * t["overhead"] for t in toys],
            color=[COLORS.get(n, "#444") for n in names],
        )
        ax.axhline(3, color="black", linestyle=":", linewidth=1)
        ax.set_title("toy loop: time added by storing")
        ax.set_ylabel("% of the loop storing nothing")
        ax.set_xticks(range(len(toys)), names, rotation=35, ha="right")
        axes[1][-1].axis("off")
    machine = results["machine"]
    fig.suptitle(
        f"writebehind {machine.get('writebehind', '')} ({machine.get('commit', '')}) on "
        f"{machine.get('cpu', '?')}, {machine.get('cpus')} CPUs; medians of "
        f"{results['repeats']} run(s)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _copy(rows: list[dict[str, Any]]) -> float | None:
    values = sorted(r["copy_p50_us"] for r in rows if r.get("copy_p50_us") is not None)
    return values[len(values) // 2] if values else None
