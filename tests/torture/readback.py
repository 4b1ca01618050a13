"""Open damaged copies of the integrity file and read every entry; one JSON line per copy.

Usage: ``python readback.py JOBS_JSON_FILE`` (a list of ``{"path", "mode", "frames",
"rows", "checksummed"}``: the copy, the mode to open it with, the entries written to each
appendable variable, how many entries a chunk of each holds, the variables with checksums;
mode ``"inspect"`` runs ``writebehind inspect`` on the copy instead)

For each job, in turn: digests the copy and every file beside it that belongs to it, opens
it with writebehind in ``mode``, reads every variable of :mod:`workload`'s integrity file
(appendable ones chunk by chunk; where a chunk's read raised, entry by entry if the variable
is checksummed, else by halving the range: see :func:`_bisect`), compares each value bit for
bit with what was written, closes the store and digests again. Prints
``{"open_error": ..., "variables": {path: {...}}, "changed": bool, "new_files": [...]}``
flushed at once, so that the parent keeps the results of the jobs done before one that
crashes the process (a damaged HDF5 file can).

Per variable: ``length`` (what the store says), ``ok`` (entries read and correct),
``wrong`` (indices of entries read but not as written: must never happen where a checksum
guards them), ``raised`` (error type -> indices), ``missing`` (written entries the store
does not have, without an error), ``damage_reports`` (the ``entries`` of each
DamagedDataError), ``misnamed`` (DamagedDataErrors that did not name the variable and
the entry read), ``not_read_alone`` and ``returned`` (``[start, stop]`` ranges of the
entries a read returned, right or wrong). A fixed variable counts as one entry, index 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import resource
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import writebehind
from torture.workload import DEFAULT, FIXED, TEXT, matches
from writebehind import cli

APPENDABLE = [*DEFAULT, TEXT]
#: Failing reads of ranges, then reads of single entries, per variable without a checksum
#: when narrowing down the entries that raise (see :func:`_bisect`).
FAILED_READS = 12
ALONE = 2
#: How much the reader's address space may grow once it has started: HDF5 allocates what a
#: damaged reference to a variable-length object says (measured: 3.8 GB for one entry),
#: which would take the machine's memory from other work.
HEADROOM = 2 << 30


def snapshot(path: str) -> dict[str, str]:
    """The digest of the file and of each file beside it whose name starts with its own."""
    directory = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    out = {}
    for entry in sorted(os.listdir(directory)):
        if entry == name or entry.startswith(name + "."):
            with open(os.path.join(directory, entry), "rb") as file:
                out[entry] = hashlib.sha256(file.read()).hexdigest()
    return out


def _error(exc: BaseException) -> str:
    return type(exc).__name__


class _Tally:
    def __init__(self, path: str) -> None:
        self.path = path
        self.length: int | None = None
        self.ok = 0
        self.wrong: list[int] = []
        self.raised: dict[str, list[int]] = {}
        self.missing = 0
        self.damage_reports: list[list[int]] = []
        self.misnamed = 0  # DamagedDataErrors not naming this variable and the entry read
        self.not_read_alone = 0  # entries of a range whose read raised, not narrowed down
        self.returned: set[int] = set()  # indices of the entries a read returned
        self.messages: list[str] = []

    def value(self, path: str, index: int | None, got: Any) -> None:
        self.returned.add(index or 0)
        if matches(path, index, got):
            self.ok += 1
        else:
            self.wrong.append(index or 0)

    def error(self, index: int, exc: BaseException) -> None:
        self.raised.setdefault(_error(exc), []).append(index)
        if isinstance(exc, writebehind.DamagedDataError):
            self.damage_reports.extend([start, stop] for start, stop in exc.entries)
            named = any(start <= index < stop for start, stop in exc.entries)
            self.misnamed += not (named and exc.path == self.path)
        if len(self.messages) < 3:
            self.messages.append(f"{_error(exc)}: {exc}"[:300])

    def summary(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "ok": self.ok,
            "wrong": self.wrong,
            "raised": self.raised,
            "missing": self.missing,
            "damage_reports": self.damage_reports,
            "misnamed": self.misnamed,
            "not_read_alone": self.not_read_alone,
            "returned": _ranges(self.returned),
            "messages": self.messages,
        }


def _ranges(indices: set[int]) -> list[list[int]]:
    """``indices`` as ``[start, stop]`` ranges."""
    out: list[list[int]] = []
    for index in sorted(indices):
        if out and out[-1][1] == index:
            out[-1][1] += 1
        else:
            out.append([index, index + 1])
    return out


def _read_appendable(store: Any, path: str, frames: int, rows: int, checksummed: bool) -> _Tally:
    tally = _Tally(path)
    try:
        node = store[path]
        length = len(node)
    except Exception as exc:
        for index in range(frames):
            tally.error(index, exc)
        return tally
    tally.length = length
    tally.missing = max(0, frames - length)
    failed = []
    for start in range(0, length, rows):
        stop = min(start + rows, length)
        try:
            values = node.read(slice(start, stop))
        except Exception:
            failed.append((start, stop))
            continue
        for index in range(start, stop):
            tally.value(path, index, values[index - start])
    if checksummed:
        # a chunk's read raised: every entry of it, read on its own, must raise too
        for start, stop in failed:
            for index in range(start, stop):
                try:
                    tally.value(path, index, node.read(index))
                except Exception as exc:
                    tally.error(index, exc)
    else:
        _bisect(node, path, failed, tally)
    return tally


def _bisect(node: Any, path: str, failed: list[tuple[int, int]], tally: _Tally) -> None:
    """Narrow the ranges whose read raised down to the entries that raise: halve them,
    widest first, within :data:`FAILED_READS` failing reads, then read :data:`ALONE` of the
    entries left on their own (a read of one entry whose reference to its variable-length
    object is damaged can cost HDF5 seconds and gigabytes). The entries left unread are
    counted as ``not_read_alone``."""
    queue = sorted(failed, key=lambda r: r[0] - r[1])
    budget = FAILED_READS
    while queue and budget > 0 and queue[0][1] - queue[0][0] > 1:
        start, stop = queue.pop(0)
        middle = (start + stop) // 2
        for low, high in ((start, middle), (middle, stop)):
            try:
                values = node.read(slice(low, high))
            except Exception:
                budget -= 1
                queue.append((low, high))
                continue
            for index in range(low, high):
                tally.value(path, index, values[index - low])
        queue.sort(key=lambda r: r[0] - r[1])
    left = sorted(index for start, stop in queue for index in range(start, stop))
    alone = left[:: max(1, -(-len(left) // ALONE))][:ALONE] if left else []
    for index in alone:
        try:
            tally.value(path, index, node.read(index))
        except Exception as exc:
            tally.error(index, exc)
    tally.not_read_alone += len(left) - len(alone)


def _read_fixed(store: Any, path: str) -> _Tally:
    tally = _Tally(path)
    try:
        tally.value(path, None, store[path].read())
        tally.length = 1
    except Exception as exc:
        tally.error(0, exc)
    return tally


def _inspect(path: str) -> dict[str, Any]:
    """``writebehind inspect PATH``, its output thrown away: its exit status and last line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["inspect", path])
    lines = (err.getvalue() or out.getvalue()).strip().splitlines()
    return {"status": status, "said": lines[-1][:300] if lines else ""}


def read_copy(job: dict[str, Any]) -> dict[str, Any]:
    path = job["path"]
    before = snapshot(path)
    result: dict[str, Any] = {"path": path, "mode": job["mode"], "variables": {}}
    if job["mode"] == "inspect":  # the command line's read-only look at a file
        result["inspect"] = _inspect(path)
        result["changed"] = snapshot(path) != before
        result["new_files"] = sorted(set(snapshot(path)) - set(before))
        return result
    try:
        store = writebehind.open(path, job["mode"])
    except Exception as exc:
        result["open_error"] = _error(exc)
        result["open_message"] = str(exc)[:300]
    else:
        try:
            for name in APPENDABLE:
                tally = _read_appendable(
                    store,
                    name,
                    job["frames"],
                    job["rows"].get(name, 1),
                    name in job["checksummed"],
                )
                result["variables"][name] = tally.summary()
            for name in FIXED:
                result["variables"][name] = _read_fixed(store, name).summary()
        finally:
            try:
                store.close()
            except Exception as exc:
                result["close_error"] = f"{_error(exc)}: {exc}"[:300]
    after = snapshot(path)
    result["changed"] = after != before
    result["new_files"] = sorted(set(after) - set(before))
    return result


def _cap_address_space() -> None:
    """Limit the address space to what it is now plus :data:`HEADROOM` (Linux)."""
    try:
        with open("/proc/self/statm") as statm:
            now = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = now + HEADROOM if hard == resource.RLIM_INFINITY else min(now + HEADROOM, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


if __name__ == "__main__":
    _cap_address_space()
    with open(sys.argv[1]) as jobs:
        for job in json.load(jobs):
            print(json.dumps(read_copy(job)), flush=True)
