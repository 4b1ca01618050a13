"""The full kill-torture run (the CI variant is tests/drivers/netcdf/test_durability_torture.py).

Usage: ``.venv/bin/python tools/torture.py [--random N] [--seed S] [--out results.json]``

1. N random SIGKILLs (default 100, fixed seed) of children appending to six variables,
   continuing one file per chain, so every child first recovers its predecessor's crash;
2. a SIGKILL at every pwrite64 of every flush (and the close) of a fixed run of 30 frames
   flushed every 5, the third flush creating a group and a variable;
3. a SIGKILL at every pwrite64 of the flush that first splits a variable's chunk index (an
   HDF5 B-tree of 64 chunks a node), with 1 MiB entries (``big``): the undo journal of
   ``drivers/netcdf/journal.py`` is what keeps those entries;
4. with ``--scale``: a SIGKILL at every pwrite64 of a structural flush (a new group, a new
   variable, a new attribute, and entries) on a file of at least 1 GB (``--scale-gb``),
   each on a fresh copy of one base file (issue 16);
5. 20 SIGKILLs as soon as a child's first acknowledgement arrives;
6. negative controls: acknowledging before flushing must be caught.

Prints one JSON document (also written to ``--out``) with, per part: trials, acknowledged
entries checked, lost (must be 0), torn, files unreadable before and after recovery.

The integrity family (``--parts integrity``; figures written to ``--integrity-out``), on
copies of a cleanly closed file (``tests/torture/integrity.py``) and on restarts
(``tests/torture/restart.py``):

6. truncation: 20 copies cut short at points spread over the file, each opened read-only
   (which must change no byte and add no file) and then to append; and the same copies
   zero-filled back to the file's length. No call may return a wrong value;
7. overwrite: 4 KiB of random bytes at 20 random offsets and at 10 offsets inside the
   variables' data, and over each fixed variable's storage exactly: a checksummed entry hit
   must raise, every other entry must read correctly or raise, none may read wrong (wrong
   values of variables without a checksum, which cannot see damage, are counted apart);
8. restart with ``"w"`` after kills, the new file on the killed run's inode number and its
   stale side files put back beside it: 4 rounds, every acknowledged value checked;
9. negative controls: the 20 random overwrites of part 7 on a file written without
   checksums must read wrong values, and recovery trusting any side file must apply the
   stale journal of part 8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from torture import harness, integrity, restart


def _part(name: str, trials: list[harness.Trial], started: float) -> dict[str, Any]:
    summary = harness.summarize(trials)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["failures"] = harness.failures(trials)[:20]
    print(f"{name}: {json.dumps({k: v for k, v in summary.items() if k != 'failures'})}")
    for line in summary["failures"]:
        print(f"  {line[:400]}")
    sys.stdout.flush()
    return summary


def structural_flush_on_a_large_file(work: Path, gigabytes: float) -> list[harness.Trial]:
    """Kill a child at each pwrite64 of a structural flush on a copy of one large file.

    The base holds ``big`` (1 MiB entries) up to ``gigabytes``, closed cleanly. Each child
    continues a fresh copy (``cp --reflink=auto``): its first flush appends one entry of
    ``big``, creates the group ``checkpoints`` with the variable ``state`` and its entries
    (``workload.LATE`` is long passed), and adds a root attribute; its second flush appends
    again, then it closes. The kills cover its open and the whole first flush.
    """
    base = work / "base.nc"
    entries = max(1, int(gigabytes * 1e9) // (131072 * 8) + 1)
    command = harness._child_command(
        base, 0, ack_before_flush=False, extra=["--variables", "big", "--max-frames", str(entries)]
    )
    command += ["--flush-every", "64"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800)
    base_acked, closed = harness._read_acks(done.stdout, {})
    assert closed and base.stat().st_size >= gigabytes * 1e9, (base.stat().st_size, done.stderr)
    extra = ["--variables", "big,checkpoints/state", "--max-frames", "2", "--flush-every", "1"]
    extra.append("--attribute")

    def fresh_copy(path: Path) -> None:
        subprocess.run(["cp", "--reflink=auto", str(base), str(path)], check=True)

    # Trace one clean continuation for the pwrite64 numbers of the open and first flush.
    traced, log = work / "trace.nc", work / "trace.log"
    fresh_copy(traced)
    child = harness._child_command(traced, 0, ack_before_flush=False, extra=extra)
    strace = ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=pwrite64,write", *child]
    subprocess.run(strace, check=True, stdout=subprocess.DEVNULL, timeout=600)
    count, first_flush_end = 0, 0
    for line in log.read_text().splitlines():
        if harness._PWRITE.match(line):
            count += 1
        elif harness._ACK.match(line) and not first_flush_end:
            first_flush_end = count
    traced.unlink()
    log.unlink()

    trials = []
    for number in range(1, first_flush_end + 1):
        path = work / "kill.nc"
        fresh_copy(path)
        child = harness._child_command(path, 0, ack_before_flush=False, extra=extra)
        inject = f"inject=pwrite64:signal=SIGKILL:when={number}"
        strace = ["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=pwrite64", "-e", inject]
        done = subprocess.run([*strace, *child], capture_output=True, text=True, timeout=600)
        acked, closed = harness._read_acks(done.stdout, base_acked)
        trial = harness.Trial(f"scale-pwrite#{number}", acked, killed=not closed)
        trial.child_error = harness._child_error(done.returncode, closed, done.stderr)
        trial.check = harness.check(path, acked)
        trials.append(trial)
        print(f"  pwrite {number}/{first_flush_end}: lost {trial.lost}", flush=True)
        for leftover in work.glob("kill.nc*"):
            leftover.unlink()
    base.unlink()
    return trials


#: Entries of each appendable variable in the integrity torture's file (11 MB; three to six
#: chunks of the large variables, one of the others).
FRAMES = 600
NOTES = [
    "Numeric appendable variables carry HDF5 Fletcher32 checksums: a damaged chunk raises "
    "DamagedDataError. str and dict records (chunks of references into HDF5's global heap, "
    "and the heap itself) and fixed variables carry none: damage to their bytes can go "
    "unseen and return a wrong value (wrong_values_undetectable), or raise OSError.",
    "A fixed variable is smaller than 4 KiB and lies among metadata: a 4 KiB overwrite "
    "hitting it also hits metadata (the open raises), so each is also overwritten exactly "
    "(group fixed_variable_exactly).",
    "Where a chunk without a checksum fails to read, readback.py narrows the failing range "
    "by halving it within 12 failing reads, then reads 2 of the entries left on their own "
    "(entries_not_read_alone counts the rest): a read of one entry whose reference to its "
    "variable-length object is damaged costs HDF5 up to seconds and gigabytes (3.8 GB "
    "measured); the reader's address space is capped 2 GiB above its size at start.",
]


def _filesystem(path: str) -> str:
    """The type of the file system ``path`` is on (Linux), which decides inode reuse."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                if path.startswith(point.rstrip("/") + "/") and len(point) > len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


def _integrity_part(name: str, summary: dict[str, Any], started: float) -> dict[str, Any]:
    summary["seconds"] = round(time.monotonic() - started, 1)
    shown = {k: v for k, v in summary.items() if k not in ("trials", "per_round", "cut_points")}
    print(f"{name}: {json.dumps(shown)}")
    sys.stdout.flush()
    return summary


def run_integrity(work: Path, seed: int) -> dict[str, Any]:
    """Parts 6 to 8 (see the module's docstring)."""
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "filesystem": _filesystem(str(work.resolve())),
        "frames": FRAMES,
        "notes": NOTES,
    }
    for name, zero_filled in (("truncation", False), ("truncation_zero_filled", True)):
        started = time.monotonic()
        (work / name).mkdir()
        summary = integrity.truncation(work / name, FRAMES, 20, zero_filled=zero_filled)
        results[name] = _integrity_part(name, summary, started)
    started = time.monotonic()
    (work / "overwrite").mkdir()
    summary = integrity.overwrites(work / "overwrite", FRAMES, uniform=20, in_data=10, seed=seed)
    results["overwrite"] = _integrity_part("overwrite", summary, started)
    started = time.monotonic()
    (work / "control").mkdir()
    summary = integrity.overwrites(
        work / "control", FRAMES, uniform=20, in_data=0, seed=seed, checksums=False
    )
    results["negative_control_overwrite_without_checksums"] = _integrity_part(
        "negative control (overwrite, no checksums)", summary, started
    )
    for name, trust in (("restart_after_kills", False), ("negative_control_restart", True)):
        started = time.monotonic()
        (work / name).mkdir()
        summary = restart.restart_after_kills(work / name, 4, trust_any_side_file=trust)
        results[name] = _integrity_part(name, summary, started)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=100, help="random kills (default 100)")
    parser.add_argument("--seed", type=int, default=20240605)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-split", action="store_true", help="skip part 3 (slow)")
    parser.add_argument("--scale", action="store_true", help="run part 4 (minutes, 2+ GB disk)")
    parser.add_argument("--scale-gb", type=float, default=1.0, help="part 4's file size")
    parser.add_argument("--only-scale", action="store_true", help="run part 4 alone")
    parser.add_argument(
        "--parts", choices=["all", "kills", "integrity"], default="all", help="default: all"
    )
    parser.add_argument("--integrity-out", type=Path, help="where the integrity family goes")
    args = parser.parse_args()
    if args.parts != "kills":
        with tempfile.TemporaryDirectory(prefix="writebehind-integrity-") as tmp:
            figures = run_integrity(Path(tmp), args.seed)
        if args.integrity_out:
            args.integrity_out.write_text(json.dumps(figures, indent=2) + "\n")
        if args.parts == "integrity":
            return 0
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "strace": harness.strace_available(),
    }
    if args.only_scale:
        args.scale = True
    here = Path(__file__).resolve().parent.parent  # part 4's gigabyte stays off /tmp
    if args.scale and harness.strace_available():
        with tempfile.TemporaryDirectory(prefix="writebehind-torture-scale-", dir=here) as tmp:
            started = time.monotonic()
            trials = structural_flush_on_a_large_file(Path(tmp), args.scale_gb)
            results["pwrite_kills_structural_flush_large_file"] = _part(
                f"structural flush on a {args.scale_gb:g} GB file", trials, started
            )
    if args.only_scale:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="writebehind-torture-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        (work / "random").mkdir()
        trials = harness.random_kills(work / "random", args.random, args.seed, chains=args.workers)
        results["random_kills"] = _part("random kills", trials, started)

        started = time.monotonic()
        (work / "random-checksums").mkdir()
        trials = harness.random_kills(
            work / "random-checksums",
            args.random // 2,
            args.seed + 3,
            chains=args.workers,
            checksums=True,
        )
        results["random_kills_checksums"] = _part("random kills, checksums", trials, started)

        if harness.strace_available():
            (work / "pwrite").mkdir()
            frames, every = 30, 5
            ranges = harness.flush_pwrites(work / "pwrite", frames, every)
            last = ranges[-1][1]
            started = time.monotonic()
            # every pwrite64 of the run: each flush, and the close after the last one
            trials = harness.pwrite_kills(
                work / "pwrite",
                range(1, last + 1),
                frames=frames,
                flush_every=every,
                workers=args.workers,
            )
            results["pwrite_kills_every_flush"] = _part("pwrite kills", trials, started)
            results["pwrite_kills_every_flush"]["flush_ranges"] = ranges

            started = time.monotonic()
            first, _ = ranges[2]
            trials = harness.pwrite_kills(
                work / "pwrite",
                [first, first + 1, first + 2],
                frames=frames,
                flush_every=every,
                ack_before_flush=True,
                workers=args.workers,
            )
            results["negative_control_pwrite"] = _part("negative control", trials, started)

            if not args.skip_split:
                (work / "split").mkdir()
                frames = 70
                ranges = harness.flush_pwrites(work / "split", frames, 1, ["big"])
                first, last = ranges[64]  # the 65th flush writes the 65th chunk
                started = time.monotonic()
                trials = harness.pwrite_kills(
                    work / "split",
                    range(first, last + 1),
                    frames=frames,
                    flush_every=1,
                    variables=["big"],
                    workers=args.workers,
                )
                results["pwrite_kills_chunk_index_split"] = _part(
                    "chunk index split", trials, started
                )

                # The same split in a structural flush late in a session (the 122nd chunk
                # splits a full last leaf, the group and variable of checkpoints/state are
                # created): its metadata journal leaves the first leaf out, and was taken
                # incrementally after earlier ones (see _stable).
                (work / "late-split").mkdir()
                frames, late = 123, 122
                variables = ["big", "checkpoints/state"]
                ranges = harness.flush_pwrites(work / "late-split", frames, 1, variables, late)
                first, last = ranges[late - 1]
                started = time.monotonic()
                trials = harness.pwrite_kills(
                    work / "late-split",
                    range(first, last + 1),
                    frames=frames,
                    flush_every=1,
                    variables=variables,
                    workers=args.workers,
                    late=late,
                )
                results["pwrite_kills_structural_split_late"] = _part(
                    "structural flush splitting a chunk index, late in a session", trials, started
                )
        started = time.monotonic()
        (work / "on-ack").mkdir()
        trials = harness.random_kills(
            work / "on-ack", 20, args.seed + 2, chains=args.workers, kill_on_ack=True
        )
        results["kill_on_acknowledgement"] = _part("kill on acknowledgement", trials, started)

        started = time.monotonic()
        (work / "control").mkdir()
        trials = harness.random_kills(
            work / "control",
            10,
            args.seed + 1,
            chains=args.workers,
            ack_before_flush=True,
            kill_on_ack=True,
        )
        results["negative_control_random"] = _part("negative control (random)", trials, started)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
