"""Check a killed child's file in a fresh process; print one JSON line.

Usage: ``python check.py PATH ACKED_JSON`` (``{"path": entries acknowledged, ...}``)

1. ``plain_before``: whether plain netCDF4 (no writebehind) opens the file as the crash
   left it and reads every variable's committed rows;
2. opens it with writebehind read-only, which must change no byte of it (``read_only_wrote``
   otherwise) and either reads it as it is or refuses (``read_only_refused``); after a
   refusal, recovers it (``writebehind.recover``) and opens it read-only; reads every
   variable and
   compares each entry bit for bit with :func:`workload.entry`: acknowledged entries that are
   missing or differ are *lost*; unacknowledged entries that are present but differ are
   *torn* (a half-written or fill-value row: must never happen either);
3. ``plain_after``: plain netCDF4 again, after recovery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import netCDF4

from torture.workload import VARIABLES, same


def plain_readable(path: str) -> str:
    """'' if plain netCDF4 opens ``path`` and reads every variable's committed rows."""
    try:
        with netCDF4.Dataset(path, "r") as dataset:
            groups = [dataset]
            while groups:
                group = groups.pop()
                groups.extend(group.groups.values())
                for variable in group.variables.values():
                    attrs = variable.ncattrs()
                    stop = variable.shape[0] if variable.ndim else None
                    if "writebehind_length" in attrs:
                        stop = min(stop or 0, int(variable.getncattr("writebehind_length")))
                    if stop:
                        variable[:stop]
        return ""
    except Exception as exc:  # anything at all: the point is to report it
        return repr(exc)[:300]


def plain_readable_in_subprocess(path: str) -> str:
    """:func:`plain_readable` in a fresh process: a failed netCDF4 open can leave HDF5's
    lock on the file held (and the file descriptor open) in the process that tried."""
    done = subprocess.run(
        [sys.executable, __file__, "--plain", path], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return f"plain check exited {done.returncode}: {done.stderr[-300:]}"
    return str(json.loads(done.stdout)["error"])


def check(path: str, acked_by_path: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {"lost": 0, "torn": 0, "lengths": {}}
    import writebehind  # here: the plain check in its own process does without it
    from torture.readback import snapshot as _snapshot

    exists = os.path.exists(path)
    result["plain_before"] = plain_readable_in_subprocess(path) if exists else "missing"
    before = _snapshot(path)
    try:
        try:
            store = writebehind.open(path, "r")
        except writebehind.RecoveryNeededError:
            result["read_only_refused"] = True
            result["read_only_wrote"] = _snapshot(path) != before
            result["recovery"] = writebehind.recover(path).summary()
            store = writebehind.open(path, "r")
        else:
            result["read_only_wrote"] = _snapshot(path) != before
    except Exception as exc:
        result["open_error"] = repr(exc)[:500]
        result["lost"] = sum(acked_by_path.values())
        return result
    try:
        if "recovery" not in result:
            recovery = store.storage_driver.recovery  # type: ignore[attr-defined]
            result["recovery"] = recovery.summary() if recovery is not None else None
        for path_ in VARIABLES:
            acked = acked_by_path.get(path_, 0)
            try:
                length = len(store[path_]) if path_ in store else 0
                entries = store[path_].read() if length else []
            except Exception as exc:  # counts as losing every acknowledged entry of it
                result["read_error"] = f"{path_}: {exc!r}"[:500]
                result["lost"] += acked
                continue
            result["lengths"][path_] = length
            result["lost"] += max(0, acked - length)
            for index in range(length):
                if not same(path_, index, entries[index]):
                    result["lost" if index < acked else "torn"] += 1
    finally:
        store.close()
    result["plain_after"] = plain_readable_in_subprocess(path)
    return result


if __name__ == "__main__":
    if sys.argv[1] == "--plain":
        print(json.dumps({"error": plain_readable(sys.argv[2])}))
    else:
        print(json.dumps(check(sys.argv[1], json.loads(sys.argv[2]))))
