"""Crash recovery on open: superblock repair, rollback copies, files kept aside, reports."""

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
from writebehind import RecoveryError, RecoveryNeededError
from writebehind.drivers.netcdf import recovery as _recovery
from writebehind.drivers.netcdf.recovery import lookup3, read_superblock, recover
from writebehind.drivers.netcdf.sidefiles import FILE_ID_ATTR, FileIdentity

# Appends 12 frames, flushes after 10, then kills itself: entries 0..9 are acknowledged.
_KILLED_WRITER = """
import os, signal, sys
import numpy as np
import writebehind
store = writebehind.open(sys.argv[1])
for i in range(10):
    store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
store.flush()
for i in range(10, 12):
    store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_writer(path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], timeout=60)
    assert done.returncode == -signal.SIGKILL


def _plain_netcdf4_opens(path: Path) -> bool:
    code = "import netCDF4, sys; netCDF4.Dataset(sys.argv[1]).close()"
    return subprocess.run([sys.executable, "-c", code, str(path)]).returncode == 0


def _write_superblock_eof(path: Path, eof: int) -> None:
    superblock = read_superblock(str(path))
    assert superblock is not None
    with open(path, "r+b") as file:
        file.write(superblock.with_eof(eof))


def _identity(path: Path) -> FileIdentity:
    with netCDF4.Dataset(str(path)) as dataset:
        file_id = str(dataset.__dict__.get(FILE_ID_ATTR, ""))
    with open(path, "rb") as file:
        return FileIdentity.of(file.fileno(), file_id)


def _clean_file(path: Path, frames: int = 10) -> None:
    with writebehind.open(path, "w") as store:
        for i in range(frames):
            store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))


# -- the checksum and the superblock ---------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "initval", "expected"),
    [  # the test vectors of lookup3.c's driver
        (b"", 0, 0xDEADBEEF),
        (b"", 0xDEADBEEF, 0xBD5B7DDE),
        (b"Four score and seven years ago", 0, 0x17770551),
        (b"Four score and seven years ago", 1, 0xCD628161),
    ],
)
def test_lookup3_matches_the_reference_vectors(data, initval, expected):
    assert lookup3(data, initval) == expected


def test_a_cleanly_closed_file_has_a_valid_superblock_with_no_flags(nc_path):
    _clean_file(nc_path)
    superblock = read_superblock(str(nc_path))
    assert superblock is not None
    assert superblock.version >= 2
    assert superblock.flags == 0
    assert superblock.eof_in_file == os.path.getsize(nc_path)


def test_rewriting_the_superblock_with_its_own_eof_changes_no_byte(nc_path):
    _clean_file(nc_path)
    superblock = read_superblock(str(nc_path))
    assert superblock is not None
    assert superblock.with_eof(superblock.eof_in_file) == superblock.raw


def test_a_file_that_is_not_hdf5_has_no_superblock(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not HDF5 at all")
    assert read_superblock(str(path)) is None


def test_a_superblock_with_a_bad_checksum_is_refused(nc_path):
    _clean_file(nc_path)
    with open(nc_path, "r+b") as file:
        file.seek(44)
        file.write(b"\0\0\0\0")
    with pytest.raises(RecoveryError, match="checksum"):
        read_superblock(str(nc_path))


def test_a_file_with_a_damaged_superblock_is_left_where_it_is(nc_path):
    # A kill cannot tear the superblock (one small write): other damage is not "recovered".
    _clean_file(nc_path)
    with open(nc_path, "r+b") as file:
        file.seek(44)
        file.write(b"\0\0\0\0")
    damaged = nc_path.read_bytes()
    with pytest.raises(RecoveryError, match="checksum"):
        writebehind.open(nc_path)
    assert nc_path.read_bytes() == damaged


# -- recovery on open --------------------------------------------------------------------------
def test_a_clean_file_is_not_probed_or_changed(nc_path):
    _clean_file(nc_path)
    before = nc_path.read_bytes()
    report = recover(str(nc_path))
    assert report.clean
    assert report.readable_after is None  # no subprocess was started
    assert nc_path.read_bytes() == before


def test_a_killed_writer_leaves_the_open_for_writing_flag_set(nc_path):
    _killed_writer(nc_path)
    assert _recovery.needs_recovery(str(nc_path))


def test_opening_a_killed_writers_file_to_append_recovers_every_flushed_entry(nc_path):
    _killed_writer(nc_path)
    with writebehind.open(nc_path, "a") as store:
        frames = store.traj.positions.read()
        report = store.storage_driver.recovery
    assert frames[:, 0, 0].tolist() == list(range(10))
    assert report.superblock_repaired
    assert report.recovered


def test_opening_a_killed_writers_file_read_only_reads_it_and_changes_no_byte(nc_path):
    _killed_writer(nc_path)
    before = nc_path.read_bytes()
    names = sorted(p.name for p in nc_path.parent.iterdir())
    with writebehind.open(nc_path, "r") as store:
        frames = store.traj.positions.read()
        report = store.storage_driver.recovery
    assert frames[:, 0, 0].tolist() == list(range(10))
    assert not report.clean and not report.superblock_repaired
    assert nc_path.read_bytes() == before
    assert sorted(p.name for p in nc_path.parent.iterdir()) == names


def test_recovery_leaves_a_file_that_plain_netcdf4_opens_and_is_clean(nc_path):
    _killed_writer(nc_path)
    writebehind.open(nc_path, "a").close()
    assert _plain_netcdf4_opens(nc_path)
    assert not _recovery.needs_recovery(str(nc_path))


def test_appending_after_recovery_continues_from_the_last_flush(nc_path):
    _killed_writer(nc_path)
    with writebehind.open(nc_path) as store:
        store.traj.positions.append(np.full((50, 3), 99, dtype=np.float32))
    with writebehind.open(nc_path, "r") as store:
        assert store.traj.positions.read()[:, 0, 0].tolist() == [*range(10), 99]


def test_recovery_is_logged_as_a_warning(nc_path, caplog):
    _killed_writer(nc_path)
    with caplog.at_level(logging.WARNING, logger="writebehind"):
        writebehind.open(nc_path, "r").close()
    assert any("not close it" in record.getMessage() for record in caplog.records)


def test_an_eof_address_short_of_the_metadata_is_repaired(nc_path):
    # What a kill just before a flush's last write (the superblock) leaves: object headers
    # that point past the recorded end of allocation, so plain netCDF4 cannot open the file.
    _clean_file(nc_path)
    _write_superblock_eof(nc_path, 4096)
    _mark_open_for_writing(nc_path)
    assert not _plain_netcdf4_opens(nc_path)
    report = recover(str(nc_path))
    assert report.superblock_repaired
    assert report.old_eof == 4096
    assert report.new_eof == os.path.getsize(nc_path)
    assert _plain_netcdf4_opens(nc_path)


def test_the_report_keeps_the_superblock_bytes_it_replaced(nc_path):
    _clean_file(nc_path)
    _write_superblock_eof(nc_path, 4096)
    _mark_open_for_writing(nc_path)
    original = nc_path.read_bytes()[:48]
    report = recover(str(nc_path))
    assert report.original_superblock == original
    assert bytes.fromhex(report.summary()["original_superblock"]) == original


def test_rows_past_the_last_flush_are_reported_and_not_read(nc_path):
    _killed_writer(nc_path)
    report = recover(str(nc_path))
    with writebehind.open(nc_path, "r") as store:
        assert len(store.traj.positions) == 10
    rows = report.uncommitted_rows.get("traj/positions", 0)
    assert rows in (0, 2)  # 2 when the unflushed rows reached the file before the kill


# -- files that cannot be recovered --------------------------------------------------------------
def _wreck(path: Path) -> bytes:
    """Make ``path`` a file left by a crash whose metadata is gone: zeros after the
    superblock. Returns its bytes."""
    superblock = read_superblock(str(path))
    assert superblock is not None
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.seek(48)
        file.write(bytes(size - 48))
        file.seek(11)
        file.write(b"\x01")  # open for writing, as a killed writer leaves it
        file.seek(0)
        raw = bytearray(file.read(48))
        raw[44:48] = struct.pack("<I", lookup3(bytes(raw[:44])))
        file.seek(0)
        file.write(raw)
    return path.read_bytes()


def test_an_unrecoverable_file_opened_read_only_stays_where_it_is_unchanged(nc_path):
    _clean_file(nc_path)
    wrecked = _wreck(nc_path)
    with pytest.raises(RecoveryNeededError, match="writebehind recover"):
        writebehind.open(nc_path, "r")
    assert nc_path.read_bytes() == wrecked
    assert [p.name for p in nc_path.parent.iterdir()] == [nc_path.name]


def test_an_unrecoverable_file_opened_to_append_is_moved_aside_unchanged(nc_path):
    _clean_file(nc_path)
    wrecked = _wreck(nc_path)
    with pytest.raises(RecoveryError) as caught:
        writebehind.open(nc_path, "a")
    aside = caught.value.report.moved_to
    assert aside is not None
    assert aside in str(caught.value)
    assert Path(aside).read_bytes() == wrecked
    assert not nc_path.exists()


def test_opening_again_after_a_file_was_moved_aside_starts_a_new_file(nc_path):
    _clean_file(nc_path)
    _wreck(nc_path)
    with pytest.raises(RecoveryError):
        writebehind.open(nc_path)
    with writebehind.open(nc_path) as store:
        store.x.append(1.0)
    with writebehind.open(nc_path, "r") as store:
        assert store.x.read().tolist() == [1.0]


def test_a_file_in_use_by_another_writer_is_not_touched(nc_path):
    _clean_file(nc_path)
    holder = netCDF4.Dataset(str(nc_path), "a")  # HDF5 holds its lock and sets the flag
    try:
        before = nc_path.read_bytes()
        with pytest.raises(RecoveryError, match=r"in use|has it open"):
            recover(str(nc_path))
        assert nc_path.read_bytes() == before
    finally:
        holder.close()


# -- the rollback copy -------------------------------------------------------------------------
def test_a_rollback_copy_replaces_a_file_its_flush_left_unreadable(nc_path):
    _clean_file(nc_path)
    good = nc_path.read_bytes()
    _recovery.keep_rollback_copy(str(nc_path), False, _identity(nc_path))
    _wreck(nc_path)
    report = recover(str(nc_path))
    assert report.rolled_back
    assert report.moved_to is not None and Path(report.moved_to).exists()
    assert nc_path.read_bytes() == good
    assert not Path(_recovery.rollback_path(str(nc_path))).exists()


def test_a_stale_rollback_copy_is_dropped_when_the_file_is_fine(nc_path):
    _killed_writer(nc_path)
    Path(_recovery.rollback_path(str(nc_path))).write_bytes(b"stale")
    report = recover(str(nc_path))
    assert not report.rolled_back
    assert not Path(_recovery.rollback_path(str(nc_path))).exists()


def test_a_flush_that_creates_a_variable_drops_its_rollback_copy(nc_path):
    _clean_file(nc_path)
    with writebehind.open(nc_path) as store:
        store.more.append(1.0)
        store.flush()
        assert not Path(_recovery.rollback_path(str(nc_path))).exists()


def test_creating_a_variable_in_an_existing_file_keeps_a_rollback_copy_until_the_flush(
    nc_path,
):
    _clean_file(nc_path)
    with writebehind.open(nc_path) as store:
        driver = store.storage_driver.backend
        store.flush()
        store.more.append(1.0)  # enqueued: the writer creates the variable, then flushes
        store.flush()
        assert driver._rollback_kept is False  # dropped by the flush


def test_a_new_file_appears_under_its_name_only_once_created(nc_path, monkeypatch):
    from writebehind.drivers.netcdf import recovery as recovery

    seen: list[bool] = []
    real_replace = os.replace

    def replace(source, target):
        if str(target) == str(nc_path):
            seen.append(os.path.exists(target))
        real_replace(source, target)

    monkeypatch.setattr(recovery.os, "replace", replace)
    with writebehind.open(nc_path, "w") as store:
        store.x.append(1.0)
    assert seen == [False]  # nothing was at the name until the valid file was renamed there
    assert not Path(str(nc_path) + recovery.NEW_SUFFIX).exists()


def test_creating_over_a_file_in_use_is_refused_and_leaves_it(nc_path):
    _clean_file(nc_path)
    holder = netCDF4.Dataset(str(nc_path), "a")
    try:
        before = nc_path.read_bytes()
        with pytest.raises(RecoveryError, match="open in another process"):
            writebehind.open(nc_path, "w").close()
        assert nc_path.read_bytes() == before
    finally:
        holder.close()


def test_a_durable_flush_of_a_new_file_fsyncs_its_directory_once(nc_path, monkeypatch):
    from writebehind.drivers.netcdf import backend as netcdf

    calls: list[str] = []
    monkeypatch.setattr(netcdf, "fsync_directory", calls.append)
    with writebehind.open(nc_path, "w") as store:
        store.x.append(1.0)
        store.flush(durable=True)
        store.x.append(2.0)
        store.flush(durable=True)
    assert calls == [str(nc_path.parent)]


@pytest.mark.parametrize("guard", ["metadata journal", "rollback copy"])
def test_the_structure_guard_is_fsynced_once_durable_entries_are_at_stake(
    nc_path, monkeypatch, guard
):
    # A file the store created holds nothing a durable flush acknowledged until its first
    # durable flush: what guards its structural flushes (the metadata journal, or the
    # rollback copy where the journal would be too large) need not survive a power loss
    # until then. After it, and in a file opened to continue it, it must.
    from writebehind.drivers.netcdf import backend as netcdf
    from writebehind.drivers.netcdf import metajournal as _metajournal

    saves: list[tuple[str, bool]] = []
    real_copy = netcdf.keep_rollback_copy
    real_save = _metajournal.MetadataJournal.save

    def keep_rollback_copy(path: str, durable: bool, identity: object) -> str:
        saves.append(("copy", durable))
        return real_copy(path, durable, identity)

    def save(self: _metajournal.MetadataJournal, durable: bool) -> bool:
        saved = real_save(self, durable)
        if saved:
            saves.append(("journal", durable))
        return saved

    monkeypatch.setattr(netcdf, "keep_rollback_copy", keep_rollback_copy)
    monkeypatch.setattr(_metajournal.MetadataJournal, "save", save)
    if guard == "rollback copy":
        monkeypatch.setattr(_metajournal, "JOURNAL_LIMIT_BYTES", 0)
    kind = "journal" if guard == "metadata journal" else "copy"
    with writebehind.open(nc_path, "w") as store:
        store.x.append(1.0)
        store.flush()
        store.y.append(1.0)
        store.flush(durable=True)
        store.z.append(1.0)
        store.flush()
    assert saves == [(kind, False), (kind, False), (kind, True)]
    saves.clear()
    with writebehind.open(nc_path, "a") as store:
        store.w.append(1.0)
        store.flush()
        assert store.x.read().tolist() == [1.0]
    assert saves == [(kind, True)]
    assert not list(nc_path.parent.glob("*.writebehind-*"))  # none left after the close


# -- writebehind recover ----------------------------------------------------------------------
def test_the_recover_command_reports_a_repaired_superblock(nc_path, capsys):
    from writebehind.cli import main

    _killed_writer(nc_path)
    assert main(["recover", str(nc_path)]) == 0
    out = capsys.readouterr().out
    assert "superblock" in out
    assert "recovered" in out


def test_the_recover_command_says_a_clean_file_needs_nothing(nc_path, capsys):
    from writebehind.cli import main

    _clean_file(nc_path)
    assert main(["recover", str(nc_path), "--json"]) == 0
    assert '"clean": true' in capsys.readouterr().out


def test_the_recover_command_fails_on_a_file_that_is_not_netcdf(tmp_path, capsys):
    from writebehind.cli import main

    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert main(["recover", str(path)]) == 1
    assert "not an HDF5 file, and netCDF4 cannot read it" in capsys.readouterr().out


def test_the_recover_command_leaves_a_netcdf3_file_alone_and_succeeds(tmp_path, capsys):
    # netCDF-3 (AMBER's format) has nothing a killed writer leaves for recovery to repair.
    from writebehind.cli import main

    path = tmp_path / "classic.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as dataset:
        dataset.createDimension("frame", None)
        dataset.createVariable("time", "f4", ("frame",))[:] = [1.0, 2.0]
    before = path.read_bytes()
    assert main(["recover", str(path)]) == 0
    assert "netCDF-3 file), nothing to recover" in capsys.readouterr().out
    assert path.read_bytes() == before


def test_a_durable_flush_fsyncs_the_entries_before_writing_their_length(nc_path, monkeypatch):
    from writebehind.drivers.netcdf import backend as netcdf

    events: list[str] = []
    real_set_attrs = netcdf.NetCDFBackend.set_attrs

    def set_attrs(self, path, attrs):
        if "writebehind_length" in attrs:
            events.append("length")
        real_set_attrs(self, path, attrs)

    monkeypatch.setattr(netcdf, "_fsync_path", lambda path: events.append("fsync"))
    monkeypatch.setattr(netcdf.NetCDFBackend, "set_attrs", set_attrs)
    with writebehind.open(nc_path, "w") as store:
        store.x.append(1.0)
        store.flush(durable=True)
        flushed = list(events)
    assert flushed == ["fsync", "length", "fsync"]


def _mark_open_for_writing(path: Path) -> None:
    """Set the superblock's open-for-writing flag, as a killed writer leaves it."""
    with open(path, "r+b") as file:
        raw = bytearray(file.read(48))
        raw[11] = 1
        raw[44:48] = struct.pack("<I", lookup3(bytes(raw[:44])))
        file.seek(0)
        file.write(raw)


def _recover_after_uncommitted_rows(nc_path: Path, name: str) -> _recovery.RecoveryReport:
    """Write 3 variable-length rows to ``name`` past its 5 committed ones, as a writer killed
    before its flush leaves them, and recover the file."""
    with netCDF4.Dataset(str(nc_path), "a") as dataset:
        rows = np.empty(3, dtype=object)
        for i in range(3):
            rows[i] = np.frombuffer(b"xyz", np.uint8)
        dataset[name][5:8] = rows
    _mark_open_for_writing(nc_path)
    return recover(str(nc_path))


def test_variable_length_rows_past_the_last_flush_are_cut_after_a_crash(nc_path):
    # Such rows may point to heap objects the kill kept from the file, and HDF5 frees the
    # old object when a row is overwritten: left there, they would make the next append fail.
    with writebehind.open(nc_path, "w") as store:
        for i in range(5):
            store.log.append({"step": i})
    report = _recover_after_uncommitted_rows(nc_path, "log")
    assert report.cut_rows == {"log": 3}
    with netCDF4.Dataset(str(nc_path)) as dataset:
        assert dataset["log"].shape == (5,)
    with writebehind.open(nc_path) as store:
        store.log.append({"step": 5})
    with writebehind.open(nc_path, "r") as store:
        assert [entry["step"] for entry in store.log.read()] == [0, 1, 2, 3, 4, 5]


def test_variable_length_rows_of_a_variable_named_like_a_dimension_are_cut(nc_path):
    # "log_entry" beside the dimension log_entry of "log" is the HDF5 dataset
    # _nc4_non_coord_log_entry: the cut must shrink it, not the dimension's dataset.
    with writebehind.open(nc_path, "w") as store:
        for i in range(5):
            store.log.append(i)
            store.log_entry.append({"step": i})
    report = _recover_after_uncommitted_rows(nc_path, "log_entry")
    assert report.cut_rows == {"log_entry": 3}
    with netCDF4.Dataset(str(nc_path)) as dataset:
        assert dataset["log_entry"].shape == (5,)
        assert dataset["log"].shape == (5,)
    with writebehind.open(nc_path) as store:
        store.log.append(5)
        store.log_entry.append({"step": 5})
    with writebehind.open(nc_path, "r") as store:
        assert [entry["step"] for entry in store.log_entry.read()] == [0, 1, 2, 3, 4, 5]
        assert store.log.read().tolist() == [0, 1, 2, 3, 4, 5]


# -- the undo journal of chunk indexes -------------------------------------------------------
def _journal_for(nc_path: Path) -> tuple[str, list[tuple[int, bytes]]]:
    from writebehind.drivers.netcdf.journal import IndexJournal, _rightmost_path

    journal = IndexJournal(str(nc_path), _identity(nc_path))
    journal.before_sync(durable=False)
    fd = os.open(nc_path, os.O_RDONLY)
    try:
        nodes = [node for index in journal._indexes.values() for node in _rightmost_path(fd, index)]
    finally:
        os.close(fd)
    os.close(journal._fd)  # left in place, as by a killed process
    return journal._target, nodes


def _zero_nodes_and_recover(nc_path: Path, nodes: list[tuple[int, bytes]]) -> None:
    """Overwrite the journaled index ``nodes`` with zeros, as a kill in a split leaves them,
    recover the file and check that recovery put every node back."""
    with open(nc_path, "r+b") as file:
        for address, node in nodes:
            file.seek(address)
            file.write(bytes(len(node)))
    _mark_open_for_writing(nc_path)
    report = recover(str(nc_path))
    assert report.index_nodes_restored == len(nodes)


def test_an_interrupted_flush_gets_its_chunk_index_nodes_back(nc_path):
    # What a kill in the middle of a chunk-index split leaves: a node rewritten in place
    # whose new children were never written. Here the root is simply overwritten.
    _clean_file(nc_path, frames=30)
    _, nodes = _journal_for(nc_path)
    assert nodes
    _zero_nodes_and_recover(nc_path, nodes)
    with writebehind.open(nc_path, "r") as store:
        assert store.traj.positions.read()[:, 0, 0].tolist() == list(range(30))


def test_the_journal_restores_a_variable_named_like_another_ones_dimension(nc_path):
    # netCDF-C stores "x_entry" beside the dimension x_entry of "x" as the HDF5 dataset
    # _nc4_non_coord_x_entry; the journal must hold that dataset's index, not the
    # dimension's (which has none: reading it failed with OverflowError).
    with writebehind.open(nc_path, "w") as store:
        for i in range(30):
            store.x.append(np.full(3, i, dtype=np.float32))
            store.x_entry.append(np.full((50, 3), i, dtype=np.float32))
    from writebehind.drivers.netcdf.journal import IndexJournal

    code = (  # h5py in its own interpreter: not a second HDF5 library beside netCDF4's
        "import h5py, sys; f = h5py.File(sys.argv[1], 'r'); "
        "print(h5py.h5o.get_info(f['_nc4_non_coord_x_entry'].id).addr)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(nc_path)], capture_output=True)
    assert done.returncode == 0, done.stderr
    found = IndexJournal(str(nc_path), _identity(nc_path))
    found._refresh()
    assert found._indexes["x_entry"].header == int(done.stdout)
    _, nodes = _journal_for(nc_path)
    assert len(nodes) == 2  # the root of each index
    _zero_nodes_and_recover(nc_path, nodes)
    with writebehind.open(nc_path, "r") as store:
        assert store.x.read()[:, 0].tolist() == list(range(30))
        assert store.x_entry.read()[:, 0, 0].tolist() == list(range(30))


def test_a_variable_whose_entries_hold_no_data_does_not_stop_the_journal(nc_path):
    # Entries of shape (0,) write no chunk: the variable's index has HDF5's undefined
    # address as its root, which the journal read as a node (OverflowError, store failed).
    from writebehind.drivers.netcdf.journal import _UNDEFINED, load_journal

    with writebehind.open(nc_path, "w") as store:
        store.empty.append(np.zeros(0))
        store.positions.append(np.zeros(3))
        store.flush()
        for i in range(1, 4):
            store.empty.append(np.zeros(0))
            store.positions.append(np.full(3, float(i)))
            store.flush()
        journal = store.storage_driver.backend._index_journal
        assert journal._indexes["empty"].root == _UNDEFINED
        loaded = load_journal(str(nc_path))
        assert loaded is not None
        assert journal._indexes["positions"].root in [a for a, _ in loaded[1]]
    with writebehind.open(nc_path, "r") as store:
        assert store.empty.read().shape == (4, 0)
        assert store.positions.read()[:, 0].tolist() == [0, 1, 2, 3]


def test_an_incomplete_journal_is_deleted_unused(nc_path):
    _clean_file(nc_path, frames=30)
    journal, _ = _journal_for(nc_path)
    data = Path(journal).read_bytes()
    Path(journal).write_bytes(data[: len(data) // 2])  # killed while writing it
    before = nc_path.read_bytes()
    _mark_open_for_writing(nc_path)
    report = recover(str(nc_path))
    assert report.index_nodes_restored == 0
    assert not Path(journal).exists()
    assert nc_path.read_bytes()[48:] == before[48:]


def _journal_of_another_file(nc_path: Path, same_inode: bool) -> tuple[str, bytes]:
    """A complete journal of an earlier file at ``nc_path``, beside a new file there (of
    the same inode number if ``same_inode``, as a file system that reuses it leaves it),
    whose nodes differ from the new file's; returns the journal's path and the new file's
    bytes."""
    from writebehind.drivers.netcdf.journal import _MAGIC

    _clean_file(nc_path, frames=30)
    journal, _ = _journal_for(nc_path)
    kept = Path(journal).read_bytes()
    nc_path.unlink()
    _clean_file(nc_path, frames=5)  # "w" removes the side files of the path
    assert not Path(journal).exists()
    new = _identity(nc_path)
    if same_inode:  # the identity the old journal would hold had the inode been reused
        old = FileIdentity.unpack(kept[len(_MAGIC) :])
        assert old is not None and old.file_id != new.file_id
        old = FileIdentity(new.device, new.inode, old.generation, old.file_id)
        kept = kept[: len(_MAGIC)] + old.pack() + kept[len(_MAGIC) + FileIdentity.SIZE :]
    Path(journal).write_bytes(kept)  # left by the killed run
    _mark_open_for_writing(nc_path)
    return journal, nc_path.read_bytes()


@pytest.mark.parametrize("same_inode", [False, True], ids=["new-inode", "reused-inode"])
def test_a_journal_of_another_file_of_that_name_is_ignored_and_removed(nc_path, same_inode):
    journal, before = _journal_of_another_file(nc_path, same_inode)
    report = recover(str(nc_path))
    assert report.index_nodes_restored == 0
    assert not Path(journal).exists()
    assert nc_path.read_bytes()[48:] == before[48:]  # only the superblock was repaired
    with writebehind.open(nc_path, "r") as store:
        assert store.traj.positions.read()[:, 0, 0].tolist() == list(range(5))


def test_a_journal_whose_generation_differs_is_ignored_even_with_the_same_file_id(nc_path):
    # The inode's generation alone disproves a journal of an inode since reused.
    journal, _ = _journal_of_another_file(nc_path, same_inode=True)
    with open(nc_path, "rb") as file:
        if FileIdentity.of(file.fileno(), "").generation is None:
            pytest.skip("this file system has no inode generations")
    from writebehind.drivers.netcdf.journal import _MAGIC

    data = Path(journal).read_bytes()
    old = FileIdentity.unpack(data[len(_MAGIC) :])
    assert old is not None
    forged = FileIdentity(old.device, old.inode, old.generation, _identity(nc_path).file_id)
    Path(journal).write_bytes(data[: len(_MAGIC)] + forged.pack() + data[len(_MAGIC) + 40 :])
    report = recover(str(nc_path))
    assert report.index_nodes_restored == 0


def test_creating_a_file_removes_the_side_files_a_killed_run_left(nc_path):
    _clean_file(nc_path)
    for suffix in (".writebehind-undo", ".writebehind-undo-1234", ".writebehind-rollback"):
        Path(str(nc_path) + suffix).write_bytes(b"left by a killed run")
    _clean_file(nc_path)
    assert [p.name for p in nc_path.parent.iterdir()] == [nc_path.name]


def test_the_journal_holds_the_index_as_the_last_flush_left_it(nc_path):
    from writebehind.drivers.netcdf.journal import load_journal

    _clean_file(nc_path, frames=3)
    with writebehind.open(nc_path) as store:
        for i in range(3, 6):
            store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
            store.flush()
        loaded = load_journal(str(nc_path))
        assert loaded is not None and loaded[1]
        identity, records = loaded
        assert identity == _identity(nc_path)
        with open(nc_path, "rb") as file:
            for address, node in records:
                file.seek(address)
                assert file.read(len(node)) == node


def test_closing_a_store_leaves_no_journal_behind(nc_path):
    _clean_file(nc_path, frames=3)
    with writebehind.open(nc_path) as store:
        for i in range(3):
            store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
            store.flush()
    leftovers = [p.name for p in nc_path.parent.iterdir() if p.name != nc_path.name]
    assert leftovers == []


def test_a_crashed_file_that_may_not_be_written_says_so(nc_path, monkeypatch):
    _killed_writer(nc_path)
    real_open = os.open

    def refuse(path, flags, *args):
        if str(path) == str(nc_path) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(_recovery.os, "open", refuse)
    with pytest.raises(RecoveryError, match="writebehind recover"):
        recover(str(nc_path))


def test_a_store_finds_its_chunk_indexes_without_a_subprocess(nc_path, monkeypatch):
    # A flush after a structural change used to start a Python subprocess to find the
    # chunk indexes (150-200 ms, a stall the caller saw); the open store asks HDF5 here.
    from writebehind.drivers.netcdf import journal as _journal

    def no_subprocess(path: str) -> dict[str, tuple[int, int]]:
        raise AssertionError("a subprocess was started to find the chunk indexes")

    monkeypatch.setattr(_journal, "object_header_addresses", no_subprocess)
    with writebehind.open(nc_path, "w") as store:
        for i in range(30):
            store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
        store.flush()
        store.traj.positions.append(np.full((50, 3), 30, dtype=np.float32))
        store.flush()  # entries after the structural flush: the journal finds the index
        journal = store.storage_driver.backend._index_journal
        assert "traj/positions" in journal._indexes
        assert _journal.load_journal(str(nc_path)) is not None
