"""The latency job's groups A/B: this tree against another source, interleaved.

Usage::

    .venv/bin/python -m benchmarks.latency_ab --other /path/to/old/src \\
        [--groups append-2.4MB,append-24KB,append-scalar] [--rounds 7] [--out FILE]

Each round runs every group once per variant, each in a fresh interpreter, the variants'
order alternating between rounds: this tree (``ours``) and ``--other`` (``other``).
Reports, per operation and variant, the medians over the rounds of p50 and p99 (and of their
ratios to the plain copy measured in the same process) and the whole job; and per pair of
rounds the ratio of ours to the other's p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from .latency import FULL, QUICK, ROOT, child_env, run_group_in_child

VARIANTS = ("ours", "other")


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def compare(rounds: list[dict[str, list[dict]]]) -> list[dict[str, Any]]:
    """Per (operation, variant): medians over rounds; ours/other per round, medianed."""
    out = []
    ops = [(r["op"], r["face"]) for r in rounds[0]["ours"]]
    for op, face in ops:
        for variant in rounds[0]:
            rows = [
                next(r for r in rnd[variant] if (r["op"], r["face"]) == (op, face))
                for rnd in rounds
            ]
            entry: dict[str, Any] = {"op": op, "face": face, "variant": variant}
            for key in ("p50_us", "p99_us", "max_us", "job_s"):
                entry[key] = _median([r.get(key) for r in rows])
            if "peer_stats" in rows[0]:
                for key in ("p50_us", "p99_us"):
                    entry[f"{key[:3]}_over_copy"] = _median(
                        [r[key] / r["peer_stats"][key] for r in rows]
                    )
            out.append(entry)
        if "other" in rounds[0]:
            for key in ("p50_us", "p99_us", "job_s"):
                pairs = []
                for rnd in rounds:
                    mine = next(r for r in rnd["ours"] if (r["op"], r["face"]) == (op, face))
                    theirs = next(r for r in rnd["other"] if (r["op"], r["face"]) == (op, face))
                    if mine.get(key) and theirs.get(key):
                        pairs.append(mine[key] / theirs[key])
                if pairs:
                    out.append(
                        {
                            "op": op,
                            "face": face,
                            "variant": f"ours/other {key}",
                            "median": statistics.median(pairs),
                            "pairs": pairs,
                        }
                    )
    return out


def table(entries: list[dict[str, Any]]) -> str:
    def f(value: Any, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    lines = [
        "| operation | variant | p50 µs | p99 µs | p50/copy | p99/copy | job s |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        if "median" in e:
            continue
        lines.append(
            f"| {e['op']} ({e['face']}) | {e['variant']} | {f(e['p50_us'], '.1f')} "
            f"| {f(e['p99_us'], '.1f')} | {f(e.get('p50_over_copy'), '.2f')} "
            f"| {f(e.get('p99_over_copy'), '.2f')} | {f(e['job_s'], '.3f')} |"
        )
    pairs = [e for e in entries if "median" in e]
    if pairs:
        lines += [
            "",
            "| operation | ratio, per round | median | rounds ours lower |",
            "|---|---|---|---|",
        ]
        for e in pairs:
            lower = sum(p < 1 for p in e["pairs"])
            lines.append(
                f"| {e['op']} ({e['face']}) | {e['variant']} | {e['median']:.2f} "
                f"| {lower} of {len(e['pairs'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", help="the other writebehind source (its src/ folder)")
    parser.add_argument("--groups", default="append-2.4MB,append-24KB,append-scalar")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="the groups' quick sizes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    variants = {"ours": child_env(str(ROOT / "src"))}
    if args.other:
        variants["other"] = child_env(args.other)
    names = list(variants)
    groups = [g for g in args.groups.split(",") if g]
    rounds: list[dict[str, list[dict]]] = []
    with tempfile.TemporaryDirectory(prefix="writebehind-latency-ab-") as directory:
        for k in range(args.rounds):
            order = names[k % len(names) :] + names[: k % len(names)]
            measured: dict[str, list[dict]] = {name: [] for name in names}
            for group in groups:
                for name in order:
                    measured[name] += run_group_in_child(
                        group, directory, QUICK if args.quick else FULL, variants[name]
                    )
            rounds.append(measured)
            print(f"  round {k + 1}/{args.rounds}", file=sys.stderr, flush=True)
    entries = compare(rounds)
    print(table(entries))
    if args.out:
        result = {
            "command": "python -m benchmarks.latency_ab " + " ".join(sys.argv[1:]),
            "other": args.other,
            "rounds": rounds,
            "comparison": entries,
        }
        args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
