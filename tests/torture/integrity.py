"""The integrity torture: damaged copies of a cleanly closed file never yield a wrong value.

Shared by tests/drivers/netcdf/test_integrity_torture.py and tools/torture.py. Two families of
damage, each on fresh copies of one file written by writebehind (:func:`write_reference`: the
kill-torture's variables, a str per entry and two fixed variables):

- :func:`truncation`: copies cut short (``head -c``) at cut points spread over the file,
  and (``zero_filled``) the same copies extended back to the full length with zeros, as a
  file system can leave a file whose size reached the disk before its data. Each copy is
  opened read-only, looked at with ``writebehind inspect``, then opened to append;
- :func:`overwrites`: 4 KiB of random bytes written over copies at random offsets, and at
  offsets known to lie inside the variables' data (chunks, or the storage of a fixed
  variable). Each copy is opened read-only.

Every copy is read in a fresh process (``readback.py``: a damaged HDF5 file can crash the
library), every entry compared bit for bit with what was written. A read may raise; it may
never return a wrong value where a checksum guards the entry, and a read-only open may never
change a byte or add a file. Variables without a checksum (str and dict records, fixed
variables) cannot detect damage to their bytes: wrong values read from them are counted
apart (``wrong_values_undetectable``), where the overwrite hit their storage or bytes that
belong to no variable's storage (HDF5's global heap of str and dict records lies there).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import writebehind
from torture.workload import DEFAULT, FIXED, TEXT, expected

HERE = Path(__file__).resolve().parent
READBACK = HERE / "readback.py"
STORAGE_MAP = HERE / "storage_map.py"
OVERWRITE = 4096
APPENDABLE = [*DEFAULT, TEXT]


def write_reference(path: Path, frames: int, *, checksums: bool = True) -> None:
    """The file every copy is made of: ``frames`` entries of each appendable variable and
    the fixed variables, written by writebehind and closed cleanly (``checksums=False``:
    without checksums, for the negative control)."""
    driver = writebehind.NetCDFIODriver(str(path), "w", checksums=checksums)
    with writebehind.StorageInterface(driver) as store:
        for index in range(frames):
            for name in APPENDABLE:
                store[name].append(expected(name, index))
            if index % 50 == 49:
                store.flush()
        for name, value in FIXED.items():
            store[name].write(value)


def storage_map(path: Path) -> dict[str, dict[str, Any]]:
    """``storage_map.py`` on ``path`` (h5py, in a process of its own)."""
    done = subprocess.run(
        [sys.executable, str(STORAGE_MAP), str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"storage_map.py failed: {done.stderr[-800:]}")
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


def readback(jobs: list[dict[str, Any]], workdir: Path) -> list[dict[str, Any]]:
    """Run ``readback.py`` on ``jobs``; a job during which it crashed or hung gets
    ``{"crashed": ...}`` and the jobs after it run in a new process."""
    results: list[dict[str, Any]] = []
    while len(results) < len(jobs):
        remaining = jobs[len(results) :]
        listing = workdir / "jobs.json"
        listing.write_text(json.dumps(remaining))
        try:
            done = subprocess.run(
                [sys.executable, str(READBACK), str(listing)],
                capture_output=True,
                text=True,
                timeout=60 + 10 * len(remaining),
            )
            output, problem = done.stdout, f"exit status {done.returncode}: {done.stderr[-300:]}"
        except subprocess.TimeoutExpired as exc:
            captured = exc.stdout or b""
            output = captured.decode() if isinstance(captured, bytes) else captured
            problem = "timed out"
        lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        results.extend(lines)
        if len(results) < len(jobs):
            job = jobs[len(results)]
            results.append({"path": job["path"], "mode": job["mode"], "crashed": problem})
    (workdir / "jobs.json").unlink(missing_ok=True)
    return results


def _job(path: Path, mode: str, frames: int, layout: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``readback.py`` needs to read one copy."""
    return {
        "path": str(path),
        "mode": mode,
        "frames": frames,
        "rows": {name: int(info["rows"] or 1) for name, info in layout.items()},
        "checksummed": sorted(name for name, info in layout.items() if info["checksummed"]),
    }


def _copy_prefix(source: Path, target: Path, length: int, full_length: int | None) -> None:
    """``head -c length source > target``; zero-filled up to ``full_length`` if given."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read(length))
        if full_length is not None:
            dst.truncate(full_length)


# -- judging one read-back ---------------------------------------------------------------
class Judge:
    """Counts what the read-backs of damaged copies returned against what each may return."""

    def __init__(self, layout: dict[str, dict[str, Any]], *, undetectable_allowed: bool):
        self.layout = layout
        self.undetectable_allowed = undetectable_allowed
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.failures: list[str] = []

    def checksummed(self, name: str) -> bool:
        return bool(self.layout.get(name, {}).get("checksummed"))

    def judge(
        self,
        result: dict[str, Any],
        affected: dict[str, set[int]] | None = None,
        unmapped_hit: bool = True,
    ) -> None:
        """Count one read-back. ``affected``: the entries of each variable whose storage
        the damage overlapped (None: not known, every entry may have been hit);
        ``unmapped_hit``: whether it hit bytes outside every variable's storage."""
        counts = self.counts
        counts["inspect_runs" if result["mode"] == "inspect" else "opens"] += 1
        tag = f"{Path(result['path']).name} ({result['mode']})"
        if result.get("changed") and result["mode"] in ("r", "inspect"):
            counts["read_only_opens_that_wrote"] += 1
            self.failures.append(f"{tag}: a read-only open changed {result.get('new_files')}")
        if result.get("changed") and result.get("open_error") == "TruncatedFileError":
            counts["refusals_that_changed_the_file"] += 1
            self.failures.append(f"{tag}: TruncatedFileError, but the copy changed")
        if "crashed" in result:
            counts["reader_crashed_or_hung"] += 1
            self.errors["reader crashed or hung"] += 1
            return
        if "inspect" in result:
            said = result["inspect"]["said"].replace(result["path"], "FILE")
            kind = "truncated" if "truncated" in said else said[:90]
            self.errors[f"inspect exit {result['inspect']['status']}: {kind}"] += 1
            return
        if "open_error" in result:
            counts["opens_that_raised"] += 1
            self.errors[f"open: {result['open_error']}"] += 1
            return
        if "close_error" in result:
            self.errors["close: " + result["close_error"].split(":")[0]] += 1
        for name, tally in result["variables"].items():
            self._variable(tag, name, tally, affected, unmapped_hit)

    def _variable(
        self,
        tag: str,
        name: str,
        tally: dict[str, Any],
        affected: dict[str, set[int]] | None,
        unmapped_hit: bool,
    ) -> None:
        counts = self.counts
        checksummed = self.checksummed(name)
        hit = None if affected is None else affected.get(name, set())
        for kind, indices in tally["raised"].items():
            self.errors[f"read: {kind}"] += len(indices)
            counts["entries_that_raised"] += len(indices)
            if hit is not None and not unmapped_hit:
                # only data was hit: an entry whose data was not hit must read
                stray = [i for i in indices if i not in hit]
                counts["unaffected_entries_that_raised"] += len(stray)
                if stray:
                    self.failures.append(f"{tag}: {name} {stray[:5]} raised {kind}, not hit")
        counts["entries_read_correctly"] += tally["ok"]
        counts["entries_missing_without_error"] += tally["missing"]
        counts["damage_errors_misnamed"] += tally.get("misnamed", 0)
        counts["entries_not_read_alone"] += tally.get("not_read_alone", 0)
        if hit:
            key = "checksummed" if checksummed else "unchecksummed"
            returned = sorted(i for a, b in tally["returned"] for i in range(a, b) if i in hit)
            counts[f"affected_entries_{key}"] += len(hit)
            counts[f"affected_entries_returned_{key}"] += len(returned)
            if checksummed and returned:
                self.failures.append(f"{tag}: {name} {returned[:5]} hit, read without error")
        for index in tally["wrong"]:
            # A variable without a checksum cannot see damage to its own bytes, or to bytes
            # outside every variable's storage (its global heap lies there).
            undetectable = self.undetectable_allowed and not checksummed
            if hit is not None:
                undetectable = undetectable and (index in hit or unmapped_hit)
            if undetectable:
                counts["wrong_values_undetectable"] += 1
                counts[f"wrong_values_undetectable:{name}"] += 1
            else:
                counts["wrong_values"] += 1
                self.failures.append(f"{tag}: {name}[{index}] returned a wrong value")

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(sorted(self.counts.items()))
        for key in ("wrong_values", "read_only_opens_that_wrote", "wrong_values_undetectable"):
            out.setdefault(key, 0)
        out["errors_by_type"] = dict(self.errors.most_common())
        out["failures"] = self.failures[:20]
        return out


# -- the two families ---------------------------------------------------------------------
def truncation(
    workdir: Path, frames: int, cuts: int, *, zero_filled: bool = False
) -> dict[str, Any]:
    """Copies of a closed file cut at ``cuts`` points spread over it (zero-filled back to
    its length if ``zero_filled``), each opened read-only then to append, and read."""
    reference = workdir / "reference.nc"
    write_reference(reference, frames)
    layout = storage_map(reference)
    size = reference.stat().st_size
    points = [size * k // (cuts + 1) for k in range(1, cuts + 1)]
    jobs = []
    for number, point in enumerate(points):
        copy = workdir / f"cut-{number:02d}.nc"
        _copy_prefix(reference, copy, point, size if zero_filled else None)
        for mode in ("r", "inspect", "a"):
            jobs.append(_job(copy, mode, frames, layout))
    results = readback(jobs, workdir)
    judge = Judge(layout, undetectable_allowed=zero_filled)
    for result in results:
        judge.judge(result)
    summary = {"file_bytes": size, "frames": frames, "cut_points": points, **judge.summary()}
    for number in range(len(points)):
        for leftover in workdir.glob(f"cut-{number:02d}.nc*"):
            leftover.unlink()
    return summary


def _overlap(start: int, stop: int, address: int, size: int) -> bool:
    return start < address + size and address < stop


def _damages(
    layout: dict[str, dict[str, Any]], size: int, uniform: int, in_data: int, seed: int
) -> list[tuple[str, int, int]]:
    """(group, offset, length) of each overwrite: ``uniform`` of 4 KiB anywhere in the file;
    ``in_data`` of 4 KiB from a random byte of a random chunk of each variable in turn (in a
    random order); and each fixed variable's storage exactly (it is smaller than 4 KiB and
    lies among metadata, so a 4 KiB overwrite also hits metadata, which raises at open)."""
    rng = random.Random(seed)
    damages = [
        ("uniform", rng.randrange(0, size - OVERWRITE + 1), OVERWRITE) for _ in range(uniform)
    ]
    names = sorted(layout)
    rng.shuffle(names)
    for number in range(in_data):
        name = names[number % len(names)]
        _, address, length = rng.choice(layout[name]["extents"])
        damages.append(
            ("in_data", min(address + rng.randrange(length), size - OVERWRITE), OVERWRITE)
        )
    for name in sorted(layout):
        if layout[name]["rows"] is None:
            ((_, address, length),) = layout[name]["extents"]
            damages.append(("fixed_variable_exactly", address, length))
    return damages


def affected_entries(
    layout: dict[str, dict[str, Any]], frames: int, start: int, stop: int
) -> tuple[dict[str, set[int]], bool]:
    """The entries of each variable that bytes ``start:stop`` hit, and whether some of those
    bytes lie outside every variable's storage. A checksummed chunk is hit as a whole (its
    checksum fails); in a chunk without one, only the entries whose bytes were overwritten."""
    hit: dict[str, set[int]] = {}
    covered = [False] * (stop - start)
    for name, info in layout.items():
        rows = info["rows"]
        for first, address, length in info["extents"]:
            if not _overlap(start, stop, address, length):
                continue
            low, high = max(start, address), min(stop, address + length)
            for at in range(low, high):
                covered[at - start] = True
            if rows is None:
                entries = {0}
            elif info["checksummed"]:
                entries = set(range(first, first + rows))
            else:
                size = length // rows  # unfiltered: the rows one after another
                entries = set(
                    range(first + (low - address) // size, first + -(-(high - address) // size))
                )
            hit.setdefault(name, set()).update(i for i in entries if i < frames)
    return hit, not all(covered)


def overwrites(
    workdir: Path, frames: int, *, uniform: int, in_data: int, seed: int, checksums: bool = True
) -> dict[str, Any]:
    """Random bytes over fresh copies of a closed file (see :func:`_damages`); each copy
    opened read-only and read. One summary per group of overwrites, and their total.
    ``checksums=False`` is the negative control: the file is written without checksums, and
    damage to its numeric variables must then read as wrong values."""
    reference = workdir / "reference.nc"
    write_reference(reference, frames, checksums=checksums)
    layout = storage_map(reference)
    size = reference.stat().st_size
    rng = random.Random(seed + 1)
    trials = []
    for number, (group, offset, length) in enumerate(
        _damages(layout, size, uniform, in_data, seed)
    ):
        copy = workdir / f"overwrite-{number:02d}.nc"
        shutil.copyfile(reference, copy)
        with open(copy, "r+b") as file:
            file.seek(offset)
            file.write(rng.randbytes(length))
        hit, unmapped = affected_entries(layout, frames, offset, offset + length)
        trials.append((group, offset, length, hit, unmapped, _job(copy, "r", frames, layout)))
    results = readback([trial[-1] for trial in trials], workdir)
    judges = {group: Judge(layout, undetectable_allowed=True) for group, *_ in trials}
    total = Judge(layout, undetectable_allowed=True)
    listing = []
    for (group, offset, length, hit, unmapped, job), result in zip(trials, results, strict=True):
        for judge in (judges[group], total):
            judge.judge(result, hit, unmapped)
        listing.append(
            f"{group} {offset}+{length}, hit "
            + ", ".join(sorted(hit) + (["no variable's data"] if unmapped else []))
            + f": {_outcome(result)}"
        )
        for leftover in Path(job["path"]).parent.glob(Path(job["path"]).name + "*"):
            leftover.unlink()
    return {
        "file_bytes": size,
        "frames": frames,
        "checksummed": sorted(n for n in layout if layout[n]["checksummed"]),
        "not_checksummed": sorted(n for n in layout if not layout[n]["checksummed"]),
        "total": total.summary(),
        **{group: judge.summary() for group, judge in judges.items()},
        "trials": listing,
    }


def _outcome(result: dict[str, Any]) -> str:
    """One line: what the read-back of one copy did."""
    if "crashed" in result:
        return f"reader crashed: {result['crashed'][:80]}"
    if "open_error" in result:
        return f"open raised {result['open_error']}"
    parts = []
    for name, tally in result["variables"].items():
        raised = sum(len(v) for v in tally["raised"].values())
        if raised or tally["wrong"] or tally["missing"] or tally["not_read_alone"]:
            kinds = "/".join(sorted(tally["raised"]))
            parts.append(
                f"{name}: {raised} raised {kinds}".rstrip()
                + (
                    f", {tally['not_read_alone']} more in reads that raised"
                    * bool(tally["not_read_alone"])
                )
                + (f", {len(tally['wrong'])} wrong" if tally["wrong"] else "")
                + (f", {tally['missing']} missing" if tally["missing"] else "")
            )
    return "; ".join(parts) or "every entry read correctly"
