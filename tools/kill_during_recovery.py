"""Kills during recovery, child after child: each must be able to continue the file.

Usage: ``.venv/bin/python tools/kill_during_recovery.py [--seed S] [--kills N] [--checksums]``

Runs children of the kill-torture (``tests/torture/child.py``) one after the other on one
file, each killed 0.2 to 3 s (``--max-delay``) after it has imported writebehind and starts
to open the file, so that many kills land while a child is still recovering its
predecessor's crash, and others after it recovered. (``--from-start --max-delay 1``: 0.2 to
1 s after the process starts, as this tool first did; on a busy machine the imports alone
then take longer, and few kills reach recovery.) Before each child the file and
its side files are copied to ``WORKDIR/snapshot*``. Stops at the first child that fails on
its own (not killed) and prints its error: the snapshot is then a file on which that
failure reproduces.
Prints one JSON line: kills survived, the failure if any, and how often a child started on
a file whose recovery a kill had interrupted (``marks_found``: a recovery mark beside it;
``marks_found_flag_clear``: the superblock's flag already clear, the window of the bug below),
and how many children finished recovery and opened the file (``children_opened``).

It was written as the reproducer of a bug, fixed since by the recovery mark
(``_recoverymark``; docs/durability.md, "A kill during recovery"): a kill after recovery
cleared the superblock's open-for-writing flag and before it cut the variable-length rows
past the committed length left a file that looked closed cleanly, whose next append to dict
records failed ("HDF error" writing ``log``), after 16 kills with seed 2."""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from writebehind.drivers.netcdf.sidefiles import RECOVERING_SUFFIX
from writebehind.drivers.netcdf.superblock import read_superblock

CHILD = Path(__file__).resolve().parent.parent / "tests" / "torture" / "child.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=80)
    parser.add_argument("--checksums", action="store_true")
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder, kept")
    parser.add_argument(
        "--from-start", action="store_true", help="time each kill from the child's start"
    )
    parser.add_argument(
        "--max-delay", type=float, default=3.0, help="kill 0.2 to this many seconds after"
    )
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="writebehind-kill-recovery-"))
    work.mkdir(parents=True, exist_ok=True)
    path = str(work / "run.nc")
    rng = random.Random(args.seed)
    command = [sys.executable, str(CHILD), path, *(["--checksums"] if args.checksums else [])]
    if not args.from_start:
        command.append("--say-started")
    result: dict[str, object] = {"workdir": str(work), "checksums": args.checksums}
    marks = marks_flag_clear = opened = 0
    for trial in range(args.kills):
        if os.path.exists(path + RECOVERING_SUFFIX):
            marks += 1
            superblock = read_superblock(path)
            marks_flag_clear += superblock is not None and superblock.flags == 0
        for old in glob.glob(str(work / "snapshot*")):
            os.unlink(old)
        for name in glob.glob(glob.escape(path) + "*"):
            shutil.copy(name, str(work / "snapshot") + name[len(path) :])
        child = subprocess.Popen(
            [*command, "--seed", str(trial)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None
        if not args.from_start:
            child.stdout.readline()  # STARTED, once imported (b"" if it died before)
        time.sleep(0.2 + (args.max_delay - 0.2) * rng.random())
        child.send_signal(signal.SIGKILL)
        stdout, stderr = child.communicate()
        opened += b"OPEN " in stdout  # recovered (or new), and went on to write
        if child.returncode != -signal.SIGKILL:
            result.update(kills=trial, failed=stderr.decode(errors="replace").strip()[-400:])
            break
    else:
        result.update(kills=args.kills, failed=None)
    result.update(
        marks_found=marks, marks_found_flag_clear=marks_flag_clear, children_opened=opened
    )
    print(json.dumps(result))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
