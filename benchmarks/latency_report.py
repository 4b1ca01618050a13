"""The latency job's summary: medians over rounds, targets checked, the markdown table.

See ``benchmarks/latency.py``; kept apart so that the job's measuring code reads alone.
"""

from __future__ import annotations

import statistics
from typing import Any

#: operation -> (statistic, limit): "p99" in µs, "p50/copy" and "p99/copy" as ratios to
#: the plain copy, "p99-peer" in µs beyond the peer's p50, "max" in µs, "ratio" a ratio.
TARGETS: dict[str, tuple[str, float]] = {
    "append scalar": ("p99", 3.0),
    "append 24KB": ("p99", 30.0),
    "append 2.4MB": ("p50/copy", 2.0),
    "append 2.4MB (p99)": ("p99/copy", 5.0),
    "first append of a new variable": ("p99", 200.0),
    "flush, nothing pending": ("p99", 100.0),
    "flush after creating 20 variables": ("p99-peer", 10_000.0),
    "event-loop gap, sync store in the loop": ("max", 20_000.0),
    "event-loop gap outside sync flush() calls": ("max", 20_000.0),
    "scalar job / minimal store": ("ratio", 2.0),
}


def summarize(rounds: list[list[dict]]) -> list[dict]:
    """One row per (operation, face): medians over the rounds, the largest max; targets."""
    keyed: dict[tuple[str, str], list[dict]] = {}
    for rows in rounds:
        for row in rows:
            keyed.setdefault((row["op"], row["face"]), []).append(row)
    out = []
    for (op, face), runs in keyed.items():
        row: dict[str, Any] = {"op": op, "face": face, "rounds": len(runs), "n": runs[0]["n"]}
        for key in ("p50_us", "p99_us"):
            row[key] = statistics.median(r[key] for r in runs)
        row["max_us"] = max(r["max_us"] for r in runs)
        if "peer" in runs[0]:
            row["peer"] = runs[0]["peer"]
            for key in ("p50_us", "p99_us"):
                row[f"peer_{key}"] = statistics.median(r["peer_stats"][key] for r in runs)
            row["peer_max_us"] = max(r["peer_stats"]["max_us"] for r in runs)
        for key in ("ratio", "job_s", "backpressure_waits"):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                row[key] = statistics.median(values)
        row["runs"] = runs
        out.extend(_with_targets(row))
    return out


def _with_targets(row: dict) -> list[dict]:
    """The row with its target checked; a 2.4 MB append gets a second row for its p99."""
    rows = [row]
    if row["op"].startswith("append 2.4MB"):
        rows.append({**row, "op": row["op"] + " (p99)", "runs": []})
    for r in rows:
        target = TARGETS.get(r["op"])
        if r["op"].startswith("append 2.4MB"):
            target = TARGETS["append 2.4MB (p99)" if r["op"].endswith("(p99)") else "append 2.4MB"]
        if target is None:
            continue
        stat, limit = target
        if stat == "p99":
            value = r["p99_us"]
        elif stat == "max":
            value = r["max_us"]
        elif stat == "ratio":
            value = r["ratio"]
        elif stat == "p99-peer":
            value = r["p99_us"] - r["peer_p50_us"]
        else:  # "p50/copy", "p99/copy": ratios of the medians over the rounds
            mine = [x[f"{stat[:3]}_us"] / x["peer_stats"][f"{stat[:3]}_us"] for x in row["runs"]]
            value = statistics.median(mine)
        r["target"] = {"stat": stat, "limit": limit, "value": value, "met": value <= limit}
    return rows


def _fmt_us(us: float | None) -> str:
    if us is None:
        return "–"
    return f"{us / 1e3:.1f} ms" if us >= 10_000 else f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"


def _target_text(target: dict) -> tuple[str, str, str]:
    stat, limit, value = target["stat"], target["limit"], target["value"]
    if stat in ("p50/copy", "p99/copy", "ratio"):
        return f"{stat} ≤ {limit:g}×", f"{value:.2f}×", "yes" if target["met"] else "**no**"
    if stat == "p99-peer":
        text = f"p99 ≤ {_fmt_us(limit)} + peer p50"
        return text, f"+{_fmt_us(value)}", "yes" if target["met"] else "**no**"
    return f"{stat} ≤ {_fmt_us(limit)}", _fmt_us(value), "yes" if target["met"] else "**no**"


def table(rows: list[dict]) -> str:
    lines = [
        "| operation | face | p50 | p99 | max | peer: p50 / p99 / max | target | measured | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peer = "–"
        if "peer" in r:
            peer = (
                f"{r['peer']}: {_fmt_us(r['peer_p50_us'])} / {_fmt_us(r['peer_p99_us'])} / "
                f"{_fmt_us(r['peer_max_us'])}"
            )
        target, measured, met = _target_text(r["target"]) if "target" in r else ("–",) * 3
        lines.append(
            f"| {r['op']} | {r['face']} | {_fmt_us(r['p50_us'])} | {_fmt_us(r['p99_us'])} "
            f"| {_fmt_us(r['max_us'])} | {peer} | {target} | {measured} | {met} |"
        )
    return "\n".join(lines)
