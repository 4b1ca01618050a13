"""A real full disk: a 4 MiB tmpfs fills up while a store appends (docs/failure-modes.md).

The scenario runs once, in a child process inside its own mount namespace (``unshare``), so
the small file system disappears with the child whatever happens, and the HDF5 library state
a failed close leaves behind stays out of the test process. The child reports what it saw as
JSON; each test below checks one behaviour. Run ``python tests/engine/test_faults_full_disk.py
DIR`` (with DIR on a small file system) to watch the scenario by hand.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

FS_SIZE = "4m"
ENTRY_FLOATS = 100  # 800-byte entries: a netCDF chunk of them is 1 MiB
ROUND = 100  # entries appended between flushes
HEADROOM = 1536 * 1024  # free bytes left beside the ballast: the first chunk fits, not much more


def _unshare_command(directory: Path) -> list[str] | None:
    """The command prefix that runs a child with a small tmpfs mounted on ``directory``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    mount = f"mount -t tmpfs -o size={FS_SIZE} tmpfs {directory}"
    for flags in (["-rm"], ["-m"]):  # a user namespace first; plain -m needs root
        probe = subprocess.run(
            [unshare, *flags, "sh", "-c", mount], capture_output=True, timeout=30
        )
        if probe.returncode == 0:
            return [unshare, *flags, "sh", "-c", f'{mount} && exec "$0" "$@"']
    return None


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("small_fs")
    prefix = _unshare_command(directory)
    if prefix is None:
        pytest.skip(
            "cannot mount a small tmpfs: needs util-linux 'unshare' with user namespaces "
            "enabled, or root with CAP_SYS_ADMIN (e.g. a privileged container)"
        )
    result = subprocess.run(
        [*prefix, sys.executable, __file__, str(directory)],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_full_disk_raises_background_write_error(full_disk):
    assert full_disk["error"] == "BackgroundWriteError", full_disk


def test_full_disk_error_has_enospc_as_cause(full_disk):
    assert full_disk["cause_errno"] == errno.ENOSPC, full_disk


def test_full_disk_error_names_the_file(full_disk):
    assert full_disk["message_names_file"], full_disk


def test_close_after_full_disk_raises_background_write_error_and_returns(full_disk):
    assert full_disk["close_error"] == "BackgroundWriteError", full_disk
    assert full_disk["close_returned"]


def test_entries_flushed_before_the_disk_filled_are_readable_after_freeing_space(full_disk):
    assert full_disk["acknowledged"] > 0
    assert full_disk["reread_length"] >= full_disk["acknowledged"], full_disk
    assert full_disk["acknowledged_intact"], full_disk


def test_file_never_reports_entries_the_full_disk_did_not_write(full_disk):
    # No zero or fill-value rows: every entry the reopened file reports is one appended.
    assert full_disk["bad_rows"] == [], full_disk


def test_reopened_file_takes_new_appends_after_space_is_freed(full_disk):
    assert full_disk["appended_after_freeing"], full_disk


def test_file_opens_in_a_fresh_process_after_the_writer_exits(full_disk):
    assert full_disk["fresh_process_length"] == full_disk["reread_length"] + 1, full_disk


# -- the child ---------------------------------------------------------------------------
def _entry(i: int):
    import numpy as np

    return np.full(ENTRY_FLOATS, float(i))


def _scenario(directory: Path) -> dict:
    import logging

    import numpy as np

    import writebehind

    logging.disable(logging.CRITICAL)
    path = directory / "run.nc"
    ballast = directory / "ballast"
    stat = os.statvfs(directory)
    ballast.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - HEADROOM))
    facts: dict = {"acknowledged": 0}
    store = writebehind.open(path, "w")
    appended = 0
    try:
        for _ in range(100):  # 100 rounds of 80 kB: far more than the disk holds
            for _ in range(ROUND):
                store.x.append(_entry(appended))
                appended += 1
            store.flush()
            facts["acknowledged"] = appended
    except Exception as exc:
        facts["error"] = type(exc).__name__
        cause = exc.__cause__
        facts["cause"] = repr(cause)
        facts["cause_errno"] = getattr(cause, "errno", None)
        facts["message_names_file"] = str(path) in str(exc)
    started = time.monotonic()
    try:
        store.close()
        facts["close_error"] = None
    except Exception as exc:
        facts["close_error"] = type(exc).__name__
    facts["close_returned"] = True
    facts["close_seconds"] = time.monotonic() - started

    ballast.unlink()  # space is freed
    with writebehind.open(path, "a") as again:
        got = again.x.read()
        facts["reread_length"] = len(got)
        acknowledged = facts["acknowledged"]
        facts["acknowledged_intact"] = bool(
            np.array_equal(got[:acknowledged], [_entry(i) for i in range(acknowledged)])
        )
        expected = np.arange(len(got), dtype=float)
        facts["bad_rows"] = np.flatnonzero((got != expected[:, None]).any(axis=1))[:5].tolist()
        again.x.append(_entry(len(got)))
        again.flush()
        facts["appended_after_freeing"] = len(again.x.read()) == len(got) + 1
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, writebehind\n"
            "with writebehind.open(sys.argv[1], 'r') as s: print(len(s.x))",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"},
    )
    facts["fresh_process_length"] = int(probe.stdout) if probe.returncode == 0 else probe.stderr
    return facts


if __name__ == "__main__":
    print(json.dumps(_scenario(Path(sys.argv[1]))))
