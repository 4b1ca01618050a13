"""The restart torture: a stale journal of a killed run is never applied to a new file.

A run is killed and leaves its side files (the undo journal of its chunk indexes, a voided
metadata journal). The path is then written anew with ``"w"``, which removes them; but a file
replaced by another program, or side files restored from a backup, can bring them back
beside a new file, and a file system reuses inode numbers at once. So each round of
:func:`restart_after_kills`:

1. a child (``restart_child.py again``) opens the path with ``"w"`` until the new file has
   the inode number of the first killed run's file (bounded: if the file system does not
   give it back, the stale side files get the new inode number written into their identity
   instead, keeping their own generation and file id: ``method`` says which was done);
2. once the child has flushed, the side files the previous killed run left are put back
   beside the path, in place of the child's own (the child keeps writing to its own through
   the descriptors it holds; they are kept aside, hard-linked, for the next round);
3. the child flushes again, acknowledges and SIGKILLs itself;
4. a fresh process (``restart_child.py check``) opens the path with ``"a"``, which recovers
   it, and compares ``meta`` with ``np.arange(50000.0)``: no acknowledged value may be wrong.

The negative control (``trust_any_side_file``) makes recovery believe every side file is
the file's own: the stale journal is then written into the new file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from writebehind.drivers.netcdf.journal import _MAGIC as UNDO_MAGIC
from writebehind.drivers.netcdf.metajournal import _HEADER as META_HEADER
from writebehind.drivers.netcdf.sidefiles import FileIdentity, side_files

HERE = Path(__file__).resolve().parent
CHILD = HERE / "restart_child.py"
#: Entry size of ``meta`` in each round: a different chunk index each round, so that the
#: previous round's journal never happens to hold this round's nodes.
ENTRIES = [1000, 500, 2000, 250, 1250]
TIMEOUT = 300


def _child(*args: str) -> list[str]:
    return [sys.executable, str(CHILD), *args]


def _killed(returncode: int) -> bool:
    return returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)


def _read_side_files(path: Path) -> dict[str, bytes]:
    return {os.path.basename(side): Path(side).read_bytes() for side in side_files(str(path))}


def _identity_at(name: str) -> int | None:
    """Where the file's identity lies in the side file called ``name``; None if nowhere."""
    if ".writebehind-undo" in name:
        return len(UNDO_MAGIC)
    if ".writebehind-meta" in name:
        return META_HEADER.size + 4  # the header, then its CRC32
    return None


def _with_inode(name: str, data: bytes, inode: int) -> bytes:
    """``data`` with the inode number in the identity it records replaced by ``inode``."""
    at = _identity_at(name)
    old = FileIdentity.unpack(data[at:]) if at is not None else None
    if at is None or old is None:
        return data
    new = FileIdentity(old.device, inode, old.generation, old.file_id)
    return data[:at] + new.pack() + data[at + FileIdentity.SIZE :]


def _put_back(path: Path, stale: dict[str, bytes], keep: Path) -> None:
    """Keep the child's side files (hard links, which it keeps writing through its
    descriptors), then put the stale ones in their place."""
    keep.mkdir()
    for side in side_files(str(path)):
        os.link(side, keep / os.path.basename(side))
    for name, data in stale.items():
        partial = path.parent / (name + ".restored")
        partial.write_bytes(data)
        os.replace(partial, path.parent / name)


def _log(path: Path, number: int) -> Path:
    """Where the child of round ``number`` writes its stderr. Created before the first run,
    so that no file the harness creates takes the inode a child is waiting for."""
    return path.parent / "logs" / f"round-{number}.stderr"


def _round(
    path: Path, number: int, inode: int, stale: dict[str, bytes], trust: bool, tries: int
) -> tuple[dict[str, Any], dict[str, bytes]]:
    entry = ENTRIES[number % len(ENTRIES)]
    log = _log(path, number)
    child = subprocess.Popen(
        _child(
            "again", str(path), "--inode", str(inode), "--entry", str(entry), "--tries", str(tries)
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    opened = child.stdout.readline()
    ready = child.stdout.readline()
    if not opened.startswith("OPEN ") or ready.strip() != "READY":
        child.kill()
        child.communicate(timeout=TIMEOUT)
        raise RuntimeError(
            f"round {number}: the child failed: {opened!r} {ready!r} {log.read_text()[-800:]}"
        )
    info = json.loads(opened[5:])
    if not info["reused"]:  # the file system gave another inode: forge the stale identity
        stale = {name: _with_inode(name, data, info["inode"]) for name, data in stale.items()}
    keep = path.parent / f"kept-{number}"
    _put_back(path, stale, keep)
    out, _ = child.communicate("GO\n", timeout=TIMEOUT)
    if "ACK" not in out or not _killed(child.returncode):
        raise RuntimeError(
            f"round {number}: exit {child.returncode}, {out!r} {log.read_text()[-800:]}"
        )
    own = {side.name: side.read_bytes() for side in keep.iterdir()}
    shutil.rmtree(keep)
    check = _check(path, trust)
    result = {
        "round": number,
        "entry_values": entry,
        "method": f"inode reused after {info['tries']} 'w' opens"
        if info["reused"]
        else f"identity rewritten (no reuse in {info['tries']} 'w' opens)",
        "stale_side_files": sorted(stale),
        **check,
    }
    return result, own


def _check(path: Path, trust: bool) -> dict[str, Any]:
    command = _child("check", str(path), *(["--trust-any-side-file"] if trust else []))
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        return {"error": f"check exited {done.returncode}: {done.stderr[-500:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # A file recovery gave up on was moved aside: put it back, so that the next round's "w"
    # replaces it and frees its inode as it does a recovered file's (an inode unlinked
    # otherwise may be held back for a while by ext4 without a journal)
    for aside in path.parent.glob(path.name + ".unrecoverable-*"):
        result.setdefault("moved_aside", []).append(aside.name)
        os.replace(aside, path)
    return result


def restart_after_kills(
    workdir: Path, rounds: int, *, trust_any_side_file: bool = False, tries: int = 2000
) -> dict[str, Any]:
    """A first run killed, then ``rounds`` runs restarted with ``"w"`` on the same path (and
    inode), each killed with the previous run's side files beside it, each recovered and
    checked. Returns the totals and each round's result."""
    path = workdir / "run.nc"
    (workdir / "logs").mkdir()
    for number in range(1, rounds + 1):
        _log(path, number).touch()
    done = subprocess.run(
        _child("first", str(path)), capture_output=True, text=True, timeout=TIMEOUT
    )
    if not _killed(done.returncode):
        raise RuntimeError(f"the first run exited {done.returncode}: {done.stderr[-800:]}")
    inode = path.stat().st_ino
    stale = _read_side_files(path)
    results = []
    for number in range(1, rounds + 1):
        result, stale = _round(path, number, inode, stale, trust_any_side_file, tries)
        results.append(result)
    return {
        "rounds": rounds,
        "identity_check": "disabled (negative control)" if trust_any_side_file else "on",
        "inode_reused": sum("reused" in r["method"] for r in results),
        "stale_undo_journals_that_would_change_the_file": sum(
            bool(r.get("undo_journal_would_change_the_file")) for r in results
        ),
        "stale_journals_applied": sum(
            bool((r.get("recovery") or {}).get("index_nodes_restored"))
            or bool((r.get("recovery") or {}).get("metadata_restored"))
            for r in results
        ),
        "values_checked": sum(r.get("values_checked", 0) for r in results),
        "values_wrong": sum(r.get("values_wrong", 0) for r in results),
        "values_missing": sum(r.get("values_missing", 0) for r in results),
        "values_unreadable": sum(r.get("values_unreadable", 0) for r in results),
        "errors": [r["error"] for r in results if "error" in r],
        "per_round": results,
    }
