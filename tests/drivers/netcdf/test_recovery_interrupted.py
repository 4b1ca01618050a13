"""A kill during recovery: the next open finishes it (``recoverymark``).

Recovery clears the superblock's open-for-writing flag before its last steps (HDF5 opens the
file for them only then), so a kill between the two used to leave a file that looked closed
cleanly: with variable-length rows past the committed length whose heap objects never
reached the file (the next append to a dict record failed with "HDF error"), or with an undo
journal that the next open discarded as stale. Each test kills a real recovery (SIGKILL, in
a subprocess) at one point and opens the file again.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest

import writebehind
from writebehind import RecoveryNeededError
from writebehind.drivers.netcdf import recovery as _recovery
from writebehind.drivers.netcdf.recovery import lookup3, recover
from writebehind.drivers.netcdf.sidefiles import FileIdentity

MARK = ".writebehind-recovering"

# Recovers argv[1], killed (SIGKILL) before or after (argv[3]) the call of argv[2], a
# function of _recovery; with argv[4] == "no-generation", as on a file system without inode
# generations.
_KILLED_RECOVERY = """
import os, signal, sys
from writebehind.drivers.netcdf import recovery as _recovery
from writebehind.drivers.netcdf import sidefiles as _sidefiles
path, name, when, generation = sys.argv[1:5]
if generation == "no-generation":
    _sidefiles._generation = lambda fd: None
original = getattr(_recovery, name)
def killed(*args, **kwargs):
    if when == "after":
        original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(_recovery, name, killed)
_recovery.recover(path)
"""


def _kill_recovery(path: Path, name: str, when: str, generation: str = "") -> None:
    command = [sys.executable, "-c", _KILLED_RECOVERY, str(path), name, when, generation]
    done = subprocess.run(command, timeout=120)
    assert done.returncode == -signal.SIGKILL


def _mark_open_for_writing(path: Path) -> None:
    """Set the superblock's open-for-writing flag, as a killed writer leaves it."""
    with open(path, "r+b") as file:
        raw = bytearray(file.read(48))
        raw[11] = 1
        raw[44:48] = struct.pack("<I", lookup3(bytes(raw[:44])))
        file.seek(0)
        file.write(raw)


def _crashed_with_dangling_records(path: Path, checksums: bool = False) -> None:
    """What a writer killed inside a flush can leave: 5 committed dict records, then 3 rows
    whose references point to heap objects that never reached the file, the flag set."""
    with writebehind.open(path, "w", checksums=checksums) as store:
        for i in range(5):
            store.log.append({"step": i})
            store.energies.append(float(i))
    with netCDF4.Dataset(str(path), "a") as dataset:
        rows = np.empty(3, dtype=object)
        for i in range(3):
            rows[i] = np.frombuffer(b"xyz", np.uint8)
        dataset["log"][5:8] = rows
    code = (  # h5py in its own interpreter: not a second HDF5 library beside netCDF4's
        "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); "
        "print(f['log'].id.get_chunk_info(0).byte_offset)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    chunk = int(done.stdout)
    with open(path, "r+b") as file:  # a reference: length (4), collection (8), index (4)
        for row in range(5, 8):
            file.seek(chunk + 16 * row + 12)
            file.write(struct.pack("<I", 0xFFF0 + row))  # no such object in the collection
    _mark_open_for_writing(path)


def _append_and_read_records(path: Path) -> list[int]:
    with writebehind.open(path) as store:
        store.log.append({"step": 5})
    with writebehind.open(path, "r") as store:
        return [entry["step"] for entry in store.log.read()]


def _names(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# -- the failure, at each point of the window ---------------------------------------------
@pytest.mark.parametrize(
    ("name", "when"),
    [
        ("_repair_superblock", "after"),  # the flag is clear from here on
        ("clear_vlen_rows", "before"),
        ("clear_vlen_rows", "after"),  # every step done, the mark not yet removed
    ],
)
def test_a_kill_during_recovery_leaves_dict_records_that_can_be_appended_to(nc_path, name, when):
    _crashed_with_dangling_records(nc_path)
    _kill_recovery(nc_path, name, when)
    assert _append_and_read_records(nc_path) == [0, 1, 2, 3, 4, 5]


def test_a_kill_before_the_reseal_of_a_file_with_checksums_is_finished(nc_path):
    _crashed_with_dangling_records(nc_path, checksums=True)
    _kill_recovery(nc_path, "reseal_chunks", "before")
    assert _append_and_read_records(nc_path) == [0, 1, 2, 3, 4, 5]


def _crashed_with_torn_index(nc_path: Path) -> None:
    """A file whose chunk-index nodes a killed flush overwrote, with their undo journal."""
    from writebehind.drivers.netcdf.journal import IndexJournal, _rightmost_path

    with writebehind.open(nc_path, "w") as store:
        for i in range(30):
            store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
    with netCDF4.Dataset(str(nc_path)) as dataset:
        file_id = str(dataset.writebehind_file_id)
    with open(nc_path, "rb") as file:
        identity = FileIdentity.of(file.fileno(), file_id)
    journal = IndexJournal(str(nc_path), identity)
    journal.before_sync(durable=False)
    with open(nc_path, "r+b") as file:
        indexes = journal._indexes.values()
        nodes = [n for index in indexes for n in _rightmost_path(file.fileno(), index)]
        assert nodes
        for address, node in nodes:
            file.seek(address)
            file.write(bytes(len(node)))
    os.close(journal._fd)  # left in place, as by a killed process
    _mark_open_for_writing(nc_path)


def test_a_kill_after_the_superblock_repair_keeps_the_undo_journal_in_force(nc_path):
    # The file then looks closed cleanly; its journal must not be discarded as stale.
    _crashed_with_torn_index(nc_path)
    _kill_recovery(nc_path, "_repair_superblock", "after")
    report = recover(str(nc_path))
    assert report.index_nodes_restored > 0
    with writebehind.open(nc_path, "r") as store:
        assert store.traj.positions.read()[:, 0, 0].tolist() == list(range(30))


# -- the mark ------------------------------------------------------------------------------
def test_the_next_open_reports_that_it_finished_an_interrupted_recovery(nc_path):
    _crashed_with_dangling_records(nc_path)
    _kill_recovery(nc_path, "clear_vlen_rows", "before")
    report = recover(str(nc_path))
    assert report.recovery_interrupted and report.recovered
    assert report.cut_rows == {"log": 3}
    assert "interrupted" in report.describe()


def test_a_finished_recovery_leaves_no_mark(nc_path):
    _crashed_with_dangling_records(nc_path)
    recover(str(nc_path))
    assert _names(nc_path) == [nc_path.name]


def test_the_mark_is_complete_before_recovery_changes_a_byte(nc_path, monkeypatch):
    _crashed_with_dangling_records(nc_path)
    before = nc_path.read_bytes()
    from writebehind.drivers.netcdf import recoverymark as _recoverymark

    seen = []
    original = _recovery._repair_superblock

    def repair(*args: object) -> None:
        seen.append((_recoverymark.load(str(nc_path)), nc_path.read_bytes() == before))
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_recovery, "_repair_superblock", repair)
    recover(str(nc_path))
    assert seen and seen[0][0] is not None and seen[0][1]


def test_a_mark_proves_itself_by_the_file_id_where_there_are_no_generations(nc_path, monkeypatch):
    from writebehind.drivers.netcdf import sidefiles as _sidefiles

    _crashed_with_dangling_records(nc_path)
    _kill_recovery(nc_path, "clear_vlen_rows", "before", "no-generation")
    monkeypatch.setattr(_sidefiles, "_generation", lambda fd: None)
    report = recover(str(nc_path))
    assert report.recovery_interrupted and report.cut_rows == {"log": 3}


def test_a_recovery_that_cannot_write_its_mark_changes_nothing(nc_path, monkeypatch):
    from writebehind.drivers.netcdf import recoverymark as _recoverymark

    def full_disk(path: str) -> int:
        raise OSError(28, "No space left on device", path)

    _crashed_with_dangling_records(nc_path)
    before, names = nc_path.read_bytes(), _names(nc_path)
    monkeypatch.setattr(_recoverymark, "create_exclusive", full_disk)
    with pytest.raises(_recovery.RecoveryError, match=r"No space left.*Nothing was changed"):
        recover(str(nc_path))
    assert nc_path.read_bytes() == before
    assert _names(nc_path) == names


def _clean_file_with_mark(nc_path: Path, mark: bytes) -> bytes:
    with writebehind.open(nc_path, "w") as store:
        store.log.append({"step": 0})
    Path(str(nc_path) + MARK).write_bytes(mark)
    return nc_path.read_bytes()


def _mark_of(identity: FileIdentity) -> bytes:
    return b"WBRECOV1" + identity.pack()


def test_a_mark_of_another_file_is_ignored_and_removed(nc_path, caplog):
    # an earlier file at this path (the inode number differs) whose recovery was killed
    with open(nc_path.parent / "other", "wb") as other:
        stale = _mark_of(FileIdentity.of(other.fileno(), ""))
    before = _clean_file_with_mark(nc_path, stale)
    with caplog.at_level(logging.WARNING, logger="writebehind"):
        report = recover(str(nc_path))
    assert report.clean and not report.recovery_interrupted
    assert nc_path.read_bytes() == before
    assert not Path(str(nc_path) + MARK).exists()
    assert any("does not belong to this file" in r.getMessage() for r in caplog.records)


def test_an_incomplete_mark_is_ignored_and_removed(nc_path):
    before = _clean_file_with_mark(nc_path, b"WBRECOV1\x01\x02")  # killed while written
    report = recover(str(nc_path))
    assert report.clean
    assert nc_path.read_bytes() == before
    assert not Path(str(nc_path) + MARK).exists()


def _claim_more_bytes(path: Path, extra: int) -> None:
    """Raise the superblock's end of allocation past the file's end by ``extra`` bytes."""
    from writebehind.drivers.netcdf.recovery import read_superblock

    superblock = read_superblock(str(path))
    assert superblock is not None
    with open(path, "r+b") as file:
        file.write(superblock.with_eof(os.path.getsize(path) + extra))


def test_an_interrupted_recovery_is_finished_where_hdf5_left_the_file_short(nc_path):
    # A kill inside HDF5's close in the last steps: the flag clear, the file not yet grown.
    _crashed_with_dangling_records(nc_path)
    _kill_recovery(nc_path, "clear_vlen_rows", "before")
    _claim_more_bytes(nc_path, 4096)
    report = recover(str(nc_path))
    assert report.recovery_interrupted and report.recovered


def test_a_file_cut_short_beside_a_mark_of_another_file_is_refused(nc_path):
    with open(nc_path.parent / "other", "wb") as other:
        stale = _mark_of(FileIdentity.of(other.fileno(), ""))
    _clean_file_with_mark(nc_path, stale)
    _claim_more_bytes(nc_path, 4096)
    before = nc_path.read_bytes()
    with pytest.raises(_recovery.TruncatedFileError):
        recover(str(nc_path))
    assert nc_path.read_bytes() == before


def test_a_read_only_open_reads_a_file_whose_recovery_was_interrupted_as_it_is(nc_path):
    _crashed_with_dangling_records(nc_path)
    _kill_recovery(nc_path, "clear_vlen_rows", "before")
    before, names = nc_path.read_bytes(), _names(nc_path)
    with writebehind.open(nc_path, "r") as store:
        steps = [entry["step"] for entry in store.log.read()]
        report = store.storage_driver.recovery
    assert steps == [0, 1, 2, 3, 4]
    assert report.recovery_interrupted and not report.clean
    assert nc_path.read_bytes() == before
    assert _names(nc_path) == names  # the mark stays for the next open that may write


def test_a_read_only_open_refuses_an_interrupted_recovery_it_cannot_read_as_it_is(nc_path):
    _crashed_with_torn_index(nc_path)
    _kill_recovery(nc_path, "_repair_superblock", "after")
    before = nc_path.read_bytes()
    with pytest.raises(RecoveryNeededError, match="recovery after a crash was interrupted"):
        writebehind.open(nc_path, "r")
    assert nc_path.read_bytes() == before


def test_needs_recovery_sees_an_interrupted_recovery(nc_path):
    _crashed_with_dangling_records(nc_path)
    _kill_recovery(nc_path, "clear_vlen_rows", "before")
    assert _recovery.needs_recovery(str(nc_path))


# -- the helpers recovery starts -----------------------------------------------------------
# Starts a helper as recovery does (argv[1]: the helper; argv[2]: where it writes its pid).
_STARTS_A_HELPER = """
import sys
from writebehind.drivers.netcdf.probe import _run
_run("sleep", sys.argv[2], helper=sys.argv[1])
"""
# A helper that starts as probe_child.py does, then writes its pid and sleeps.
_SLEEPING_HELPER = """
import os, sys, time
from writebehind.drivers.netcdf.probe_child import die_with_parent
die_with_parent()
with open(sys.argv[2], "w") as out:
    out.write(str(os.getpid()))
time.sleep(60)
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_helper_of_a_killed_recovery_dies_with_it(tmp_path):
    # A helper left running would go on writing the file while the next open recovers it.
    import time

    pid_file, helper_file = tmp_path / "helper.pid", tmp_path / "helper.py"
    helper_file.write_text(_SLEEPING_HELPER)
    parent = subprocess.Popen(
        [sys.executable, "-c", _STARTS_A_HELPER, str(helper_file), str(pid_file)]
    )
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        helper = int(pid_file.read_text())
        assert _running(helper)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _running(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _running(helper)
    if alive:
        os.kill(helper, signal.SIGKILL)
    assert not alive


def test_a_helper_command_that_fails_is_reported_as_a_crash(tmp_path):
    from writebehind.drivers.netcdf.probe import _run

    result, problem = _run("no-such-command", str(tmp_path / "run.nc"))
    assert result is None and problem.startswith("crashed (KeyError")
