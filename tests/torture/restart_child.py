"""The processes of the restart torture (``torture/restart.py``): each kills itself.

Usage:

- ``python restart_child.py first PATH``: opens PATH with ``"w"``, appends 200 entries
  ``np.full(20000, i)`` to ``x``, flushing every 20, and SIGKILLs itself;
- ``python restart_child.py again PATH --inode N --entry K``: opens PATH with ``"w"`` again
  and again (at most ``--tries`` times, keeping each inode it got, so that the next open
  gets another) until the new file has inode number N, and says
  ``OPEN {"inode", "tries", "reused"}``; appends the first two thirds of ``meta`` =
  ``np.arange(50000.0)`` in entries of K values, in two flushes (the first creates the
  variable, the second its undo journal), says ``READY`` and waits for a line on stdin (the
  parent puts stale side files beside PATH meanwhile); appends the rest, flushes, says
  ``ACK`` and SIGKILLs itself;
- ``python restart_child.py check PATH [--trust-any-side-file]``: in a fresh process, says
  which side files lie beside PATH and whether their undo journal would change the file,
  opens PATH with ``"a"`` (which recovers it) and compares ``meta`` with
  ``np.arange(50000.0)`` bit for bit; one JSON line. ``--trust-any-side-file`` is the
  negative control: ``FileIdentity.proves`` always says yes, as if recovery did not check
  whose a side file is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import numpy as np

import writebehind

META = np.arange(50000.0)


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def first(path: str) -> None:
    store = writebehind.open(path, "w")
    for i in range(200):
        store.x.append(np.full(20000, float(i)))
        if i % 20 == 19:
            store.flush()
    _die()


def again(path: str, inode: int, entry: int, tries: int) -> None:
    # Each "w" creates the new file under another name and renames it over the old one,
    # freeing the old inode: keep every inode that is not the one wanted allocated (a hard
    # link) until the file system hands out the one wanted, else two freed inodes below it
    # could take turns for ever.
    holders = []
    for attempt in range(1, tries + 1):
        store = writebehind.open(path, "w")
        if os.stat(path).st_ino == inode or attempt == tries:
            break
        store.close()
        holder = os.path.join(os.path.dirname(path), f".inode-holder-{attempt}")
        os.link(path, holder)
        holders.append(holder)
    for holder in holders:
        os.unlink(holder)
    reused = os.stat(path).st_ino == inode
    _say("OPEN " + json.dumps({"inode": os.stat(path).st_ino, "tries": attempt, "reused": reused}))
    entries = META.reshape(-1, entry)
    third = len(entries) // 3
    # two flushes before READY: the first creates meta, the second writes the undo journal
    for part in (entries[:third], entries[third : 2 * third]):
        for row in part:
            store.meta.append(row)
        store.flush()
    _say("READY")
    sys.stdin.readline()
    for row in entries[2 * third :]:
        store.meta.append(row)
    store.flush()
    _say("ACK")
    _die()


def check(path: str, trust_any_side_file: bool) -> dict[str, Any]:
    from writebehind.drivers.netcdf.journal import load_journal, nodes_differ
    from writebehind.drivers.netcdf.metajournal import load as load_metadata_journal
    from writebehind.drivers.netcdf.sidefiles import FileIdentity, side_files

    if trust_any_side_file:
        FileIdentity.proves = lambda self, fd, file_id: True  # type: ignore[method-assign]
    result: dict[str, Any] = {"side_files": [os.path.basename(p) for p in side_files(path)]}
    journal = load_journal(path)
    with open(path, "rb") as file:
        result["undo_journal_would_change_the_file"] = bool(
            journal and nodes_differ(file.fileno(), journal[1])
        )
    result["complete_metadata_journal"] = load_metadata_journal(path) is not None
    result["values_checked"] = len(META)
    try:
        with writebehind.open(path, "a") as store:
            report = store.storage_driver.recovery  # type: ignore[attr-defined]
            result["recovery"] = report.summary() if report is not None else None
            values = np.asarray(store.meta.read(), dtype=float).ravel()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"[:400]
        report = getattr(exc, "report", None)
        result["recovery"] = report.summary() if report is not None else None
        result["values_unreadable"] = len(META)
        return result
    common = min(len(values), len(META))
    differ = values[:common].view(np.int64) != META[:common].view(np.int64)
    result["values_wrong"] = int(np.count_nonzero(differ))
    result["values_missing"] = len(META) - common
    result["values_extra"] = len(values) - common
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["first", "again", "check"])
    parser.add_argument("path")
    parser.add_argument("--inode", type=int, default=0)
    parser.add_argument("--entry", type=int, default=1000)
    parser.add_argument("--tries", type=int, default=2000)
    parser.add_argument("--trust-any-side-file", action="store_true")
    args = parser.parse_args()
    if args.action == "first":
        first(args.path)
    elif args.action == "again":
        again(args.path, args.inode, args.entry, args.tries)
    else:
        print(json.dumps(check(args.path, args.trust_any_side_file)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
