"""The metadata undo journal that guards a flush changing a file's structure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np

from writebehind.codecs import Layout
from writebehind.drivers.netcdf import LIBRARY_LOCK, NetCDFBackend
from writebehind.drivers.netcdf import metajournal as _metajournal
from writebehind.drivers.netcdf.hdf5 import CHUNK_CALLBACK, VISIT_CALLBACK, read_only
from writebehind.drivers.netcdf.journal import _B_TREE_K
from writebehind.drivers.netcdf.metajournal import MetadataJournal, apply, metadata_ranges, parse
from writebehind.drivers.netcdf.sidefiles import FileIdentity
from writebehind.drivers.netcdf.superblock import read_superblock

#: Rows of a chunk of the 24 kB entries below, as writebehind chunks them.
CHUNK_ROWS = NetCDFBackend("unused.nc").chunk_entries(Layout("numeric", np.dtype("f8"), (1000, 3)))


def _dataset_with_entries(path: Path, rows: int = 100) -> netCDF4.Dataset:
    """A netCDF-4 file open for writing, as writebehind lays it out, with ``rows`` synced."""
    dataset = netCDF4.Dataset(str(path), "w")
    dataset.createDimension("positions_entry", None)
    dataset.createDimension("positions_axis1", 1000)
    dataset.createDimension("positions_axis2", 3)
    positions = dataset.createVariable(
        "positions",
        "f8",
        ("positions_entry", "positions_axis1", "positions_axis2"),
        chunksizes=(CHUNK_ROWS, 1000, 3),
    )
    positions.setncattr("writebehind_length", np.int64(0))
    box = dataset.createVariable("box", "f8", ("positions_axis2",))  # contiguous
    box[:] = [1.0, 2.0, 3.0]
    for row in range(rows):
        positions[row] = np.full((1000, 3), row, dtype="f8")
    dataset.sync()
    positions.setncattr("writebehind_length", np.int64(rows))
    dataset.sync()
    return dataset


def raw_extents(path: str) -> list[tuple[int, int]] | None:
    """Every chunk and contiguous storage of the file, listed whole by HDF5 (what the
    journal once did at every save; the reference the incremental one is held to)."""
    import ctypes

    with read_only(path) as opened:
        if opened is None:
            return None
        h5, file = opened
        names: list[bytes] = []

        @VISIT_CALLBACK
        def visit(obj, name, info, data):
            if ctypes.c_int.from_address(info + 24).value == 1:  # a dataset
                names.append(name)
            return 0

        h5.H5Ovisit3(file, 0, 0, visit, None, 1)
        extents: list[tuple[int, int]] = []

        @CHUNK_CALLBACK
        def chunk(offset, mask, address, size, data):
            extents.append((address, size))
            return 0

        for name in names:
            dataset = h5.H5Dopen2(file, name, 0)
            plist = h5.H5Dget_create_plist(dataset)
            layout = h5.H5Pget_layout(plist)
            h5.H5Pclose(plist)
            if layout == 2:
                h5.H5Dchunk_iter(dataset, 0, chunk, None)
            elif layout == 1:
                extents.append((h5.H5Dget_offset(dataset), h5.H5Dget_storage_size(dataset)))
            h5.H5Dclose(dataset)
        return [(a, n) for a, n in extents if a != (1 << 64) - 1 and n > 0]


def _identity(path: Path) -> FileIdentity:
    with open(path, "rb") as file:
        return FileIdentity.of(file.fileno(), "")


def _records(data: bytes) -> list[tuple[int, bytes]] | None:
    parsed = parse(data)
    return None if parsed is None else parsed[1]


def _save(path: Path) -> MetadataJournal:
    journal = MetadataJournal(str(path), _identity(path))
    with LIBRARY_LOCK:
        assert journal.save(durable=False)
    return journal


def _journal_bytes(path: Path) -> bytes:
    return Path(_metajournal.journal_path(str(path))).read_bytes()


def _metadata_bytes(path: Path, ranges: list[tuple[int, int]]) -> list[bytes]:
    with open(path, "rb") as file:
        return [os.pread(file.fileno(), length, address) for address, length in ranges]


def _change_structure(dataset: netCDF4.Dataset, first_row: int) -> None:
    """What a structural flush does: new groups, variables and attributes, more rows."""
    group = dataset.createGroup("checkpoints")
    group.createDimension("state_entry", None)
    group.createVariable("state", "i8", ("state_entry",))[0:5] = np.arange(5)
    dataset.setncattr("title", "x" * 3000)  # grows the root's header into a continuation
    dataset["positions"].setncattr("units", "nm")
    for row in range(first_row, first_row + 50):
        dataset["positions"][row] = np.full((1000, 3), row, dtype="f8")
    for n in range(20):
        dataset.createVariable(f"extra{n}", "f4", ("positions_entry",))
    dataset.sync()


def _rehome(journal: bytes, identity: FileIdentity) -> bytes:
    """The journal as if taken of the file of ``identity`` (a copy of the original)."""
    at = _metajournal._HEADER.size + 4
    return journal[:at] + identity.pack() + journal[at + FileIdentity.SIZE :]


def _clear_flags(path: Path) -> None:
    """What recovery does to a file left open for writing (flags cleared, EOA to the size)."""
    superblock = read_superblock(str(path))
    assert superblock is not None
    with open(path, "r+b") as file:
        os.pwrite(file.fileno(), superblock.with_eof(path.stat().st_size), superblock.offset)


# -- where the metadata is ---------------------------------------------------------------------
def test_metadata_ranges_are_what_the_raw_extents_leave_below_the_eoa():
    raw = [(100, 50), (10, 20), (140, 30), (400, 100)]
    assert metadata_ranges(raw, 450) == [(0, 10), (30, 70), (170, 230)]
    assert metadata_ranges([], 64) == [(0, 64)]


def test_raw_extents_list_every_chunk_and_contiguous_storage_while_netcdf_writes(nc_path):
    dataset = _dataset_with_entries(nc_path, rows=100)
    try:
        with LIBRARY_LOCK:
            extents = raw_extents(str(nc_path))
        assert extents is not None
        chunk_bytes = CHUNK_ROWS * 1000 * 3 * 8
        chunks = -(-100 // CHUNK_ROWS)
        assert sorted(size for _, size in extents) == [24, *[chunk_bytes] * chunks]
        # the second, read-only identifier did not disturb netCDF's
        dataset["positions"][100] = np.full((1000, 3), 100.0)
        dataset.sync()
    finally:
        dataset.close()
    with netCDF4.Dataset(str(nc_path)) as reread:
        assert reread["positions"].shape == (101, 1000, 3)
        assert reread["positions"][100, 0, 0] == 100.0


def test_the_journal_holds_every_metadata_byte_below_the_eoa_and_no_chunk(nc_path):
    dataset = _dataset_with_entries(nc_path)
    try:
        journal = _save(nc_path)
        records = _records(_journal_bytes(nc_path))
        assert records is not None
        with LIBRARY_LOCK:
            extents = raw_extents(str(nc_path))
        superblock = read_superblock(str(nc_path))
        assert extents is not None and superblock is not None
        ranges = metadata_ranges(extents, superblock.eof_in_file)
        assert [(address, len(data)) for address, data in records] == ranges
        assert [data for _, data in records] == _metadata_bytes(nc_path, ranges)
        assert records[0][0] == 0  # the superblock
        assert journal.last_size < 100_000  # a few KB, for a 3 MB file
        journal.close()
    finally:
        dataset.close()


# -- applying it -----------------------------------------------------------------------------
def test_applying_the_journal_after_a_structural_sync_restores_the_metadata_bytes(nc_path):
    dataset = _dataset_with_entries(nc_path)
    try:
        _save(nc_path)
        records = _records(_journal_bytes(nc_path))
        assert records is not None
        before = [data for _, data in records]
        _change_structure(dataset, first_row=100)
        ranges = [(address, len(data)) for address, data in records]
        assert _metadata_bytes(nc_path, ranges) != before  # the flush did rewrite them
        copy = nc_path.with_name("copy.nc")
        shutil.copyfile(nc_path, copy)
    finally:
        dataset.close()
    journal = _rehome(_journal_bytes(nc_path), _identity(copy))
    Path(_metajournal.journal_path(str(copy))).write_bytes(journal)
    fd = os.open(copy, os.O_RDWR)
    try:
        assert apply(str(copy), fd) == len(records)
    finally:
        os.close(fd)
    assert _metadata_bytes(copy, ranges) == before
    assert not Path(_metajournal.journal_path(str(copy))).exists()


def test_an_interrupted_structural_flush_undone_reads_as_the_last_sync_left_it(nc_path):
    # The flush is "interrupted" after everything it wrote reached the file: the copy taken
    # then holds the new structure, the journal turns it back into the old one.
    dataset = _dataset_with_entries(nc_path, rows=100)
    try:
        _save(nc_path)
        _change_structure(dataset, first_row=100)
        copy = nc_path.with_name("copy.nc")
        shutil.copyfile(nc_path, copy)
    finally:
        dataset.close()
    journal = _rehome(_journal_bytes(nc_path), _identity(copy))
    Path(_metajournal.journal_path(str(copy))).write_bytes(journal)
    fd = os.open(copy, os.O_RDWR)
    try:
        assert apply(str(copy), fd) > 0
    finally:
        os.close(fd)
    _clear_flags(copy)
    with netCDF4.Dataset(str(copy)) as reread:
        reread.set_auto_mask(False)  # a lost chunk must not pass as masked
        assert set(reread.variables) == {"positions", "box"}
        assert not reread.groups
        assert "title" not in reread.ncattrs()
        positions = reread["positions"]
        assert positions.ncattrs() == ["writebehind_length"]
        committed = int(positions.getncattr("writebehind_length"))
        assert committed == 100
        values = positions[:committed, :, :]
        assert (values == np.arange(committed)[:, None, None]).all()
        assert reread["box"][:].tolist() == [1.0, 2.0, 3.0]


def test_a_killed_structural_flush_is_undone_by_recovery(nc_path):
    # A real kill: the child creates variables and a group in a flush that it never
    # finishes (SIGKILL once the sync wrote everything, before the journal is voided).
    code = f"""
import os, signal, sys
import numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_metajournal import _dataset_with_entries, _change_structure, _save
from pathlib import Path
dataset = _dataset_with_entries(Path(sys.argv[1]), rows=100)
_save(Path(sys.argv[1]))
_change_structure(dataset, first_row=100)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", code, str(nc_path)], timeout=120)
    assert done.returncode == -9
    from writebehind.drivers.netcdf.recovery import recover

    report = recover(str(nc_path))
    assert report.readable_after
    assert report.metadata_restored > 0
    with netCDF4.Dataset(str(nc_path)) as reread:
        reread.set_auto_mask(False)  # a lost chunk must not pass as masked
        assert set(reread.variables) == {"positions", "box"}
        positions = reread["positions"]
        assert int(positions.getncattr("writebehind_length")) == 100
        assert (positions[:100, :, 0] == np.arange(100)[:, None]).all()


# -- journals that must not be applied -------------------------------------------------------
def _applied(path: Path, journal: bytes) -> int:
    target = Path(_metajournal.journal_path(str(path)))
    target.write_bytes(journal)
    before = path.read_bytes()
    fd = os.open(path, os.O_RDWR)
    try:
        count = apply(str(path), fd)
    finally:
        os.close(fd)
    assert not target.exists()  # deleted either way
    if not count:
        assert path.read_bytes() == before
    return count


def test_an_incomplete_journal_is_ignored(nc_path):
    _dataset_with_entries(nc_path).close()
    dataset = netCDF4.Dataset(str(nc_path), "a")
    try:
        journal = _save(nc_path)
        data = _journal_bytes(nc_path)
        journal.close()
    finally:
        dataset.close()
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        assert _applied(nc_path, data[:cut]) == 0
    assert _applied(nc_path, data) > 0


def test_a_corrupt_or_foreign_or_voided_journal_is_ignored(nc_path):
    dataset = _dataset_with_entries(nc_path)
    try:
        journal = _save(nc_path)
        data = _journal_bytes(nc_path)
        journal.void(durable=False)
        voided = _journal_bytes(nc_path)
        journal.close()
    finally:
        dataset.close()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    assert _applied(nc_path, bytes(flipped)) == 0
    own = _identity(nc_path)
    other = FileIdentity(own.device, own.inode + 1, own.generation, own.file_id)
    assert _applied(nc_path, _rehome(data, other)) == 0
    if own.generation is not None:  # the inode number reused by another file
        reused = FileIdentity(own.device, own.inode, own.generation + 1, own.file_id)
        assert _applied(nc_path, _rehome(data, reused)) == 0
    assert _applied(nc_path, voided) == 0


def test_records_of_an_earlier_journal_never_pass_for_a_later_one(nc_path):
    # The side file is rewritten in place; a torn rewrite mixing two journals is refused.
    dataset = _dataset_with_entries(nc_path)
    try:
        journal = _save(nc_path)
        first = _journal_bytes(nc_path)
        with LIBRARY_LOCK:
            journal.save(durable=False)
        second = _journal_bytes(nc_path)
        journal.close()
    finally:
        dataset.close()
    header = _metajournal._HEADER.size + 4
    assert _applied(nc_path, second[:header] + first[header:]) == 0


def test_closing_deletes_the_side_file(nc_path):
    dataset = _dataset_with_entries(nc_path)
    try:
        journal = _save(nc_path)
        journal.close()
    finally:
        dataset.close()
    assert not list(nc_path.parent.glob("*.writebehind-meta"))


# -- in the store ------------------------------------------------------------------------------
# Flushes 10 entries, then kills itself in the next flush, which creates a group and a
# variable, once that flush's sync wrote everything and before it voided the journal.
_KILLED_IN_A_STRUCTURAL_FLUSH = """
import os, signal, sys
import numpy as np
import writebehind
from writebehind.drivers.netcdf import metajournal as _metajournal
store = writebehind.open(sys.argv[1])
for i in range(10):
    store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
store.flush()
def void(self, durable):
    os.kill(os.getpid(), signal.SIGKILL)
_metajournal.MetadataJournal.void = void
for i in range(10, 12):
    store.traj.positions.append(np.full((50, 3), i, dtype=np.float32))
store.checkpoints.state.append(np.arange(4))
store.attrs["title"] = "a run"
store.flush()
"""


def test_a_store_killed_in_a_structural_flush_gets_its_last_flush_back(nc_path):
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_A_STRUCTURAL_FLUSH, str(nc_path)], timeout=120
    )
    assert done.returncode == -9
    assert not list(nc_path.parent.glob("*.writebehind-rollback*"))  # the journal guarded it
    import writebehind

    with writebehind.open(nc_path, "a") as store:
        report = store.storage_driver.recovery
        assert report is not None and report.metadata_restored > 0
        assert "checkpoints" not in store
        assert store.traj.positions.read()[:, 0, 0].tolist() == list(range(10))
    assert not list(nc_path.parent.glob("*.writebehind-meta"))


def test_a_structural_flush_in_the_store_keeps_a_journal_not_a_copy(nc_path):
    import writebehind

    with writebehind.open(nc_path, "w") as store:
        store.x.append(1.0)
        store.flush()
        driver = store.storage_driver.backend
        store.y.append(2.0)
        store.flush()
        assert driver._metadata_journal.last_size > 0
        assert not driver._rollback_kept and not driver._metadata_saved
        assert list(nc_path.parent.glob("*.writebehind-meta"))  # kept open, voided
    assert not list(nc_path.parent.glob("*.writebehind-*"))


def test_a_journal_without_the_nodes_off_the_index_path_undoes_a_flush_splitting_it(nc_path):
    # HDF5 splits a full last leaf keeping 57 of its 64 chunks: 235 one-row chunks are
    # three leaves of 57 and a full one, which the next rows split, moving committed chunks
    # to a new leaf. The journal leaves out the three leaves off the rightmost path.
    dataset = netCDF4.Dataset(str(nc_path), "w")
    dataset.createDimension("entry", None)
    dataset.createDimension("atom", 100)
    positions = dataset.createVariable("positions", "f8", ("entry", "atom"), chunksizes=(1, 100))
    positions[0:235] = np.arange(235)[:, None] * np.ones(100)
    positions.setncattr("writebehind_length", np.int64(235))
    dataset.sync()
    try:
        _save(nc_path)
        records = _records(_journal_bytes(nc_path))
        assert records is not None
        with LIBRARY_LOCK:
            extents = raw_extents(str(nc_path))
        superblock = read_superblock(str(nc_path))
        assert extents is not None and superblock is not None
        every = metadata_ranges(extents, superblock.eof_in_file)
        left_out = sum(n for _, n in every) - sum(len(data) for _, data in records)
        children = 2 * _B_TREE_K  # 64 a node
        leaf_bytes = 24 + children * 8 + (children + 1) * 32  # header, addresses, 2-D keys
        assert left_out == 3 * leaf_bytes  # three leaves of 2616 bytes
        positions[235:400] = np.arange(235, 400)[:, None] * np.ones(100)
        dataset.createVariable("velocities", "f4", ("entry",))
        positions.setncattr("units", "nm")
        dataset.sync()
        copy = nc_path.with_name("copy.nc")
        shutil.copyfile(nc_path, copy)
    finally:
        dataset.close()
    Path(_metajournal.journal_path(str(copy))).write_bytes(
        _rehome(_journal_bytes(nc_path), _identity(copy))
    )
    fd = os.open(copy, os.O_RDWR)
    try:
        assert apply(str(copy), fd) == len(records)
    finally:
        os.close(fd)
    _clear_flags(copy)
    with netCDF4.Dataset(str(copy)) as reread:
        reread.set_auto_mask(False)  # a chunk lost reads as fill values, not masked ones
        assert set(reread.variables) == {"positions"}
        values = reread["positions"][:235, :]
        assert (values == np.arange(235)[:, None]).all()


def test_a_structural_change_after_a_fixed_value_is_written_syncs_first(nc_path, monkeypatch):
    # A fixed str or dict value lands in HDF5's global heap (metadata in its cache): as after
    # entries, the journal's pre-images must be those of a completed sync, or finding them
    # could flush that cache with no journal in force.
    import writebehind
    from writebehind.drivers.netcdf import NetCDFBackend

    with writebehind.open(nc_path, "w") as store:
        store.note.write("first")
        store.flush()
        store.note.write("second")
        store.flush()  # nothing structural: a plain sync
        syncs_before_change: list[bool] = []
        sync_file = NetCDFBackend._sync_file

        def counted(self: NetCDFBackend, durable: bool) -> None:
            if not self._metadata_saved:  # a sync before the structural change's journal
                syncs_before_change.append(durable)
            sync_file(self, durable)

        store.note.write("third")
        store.flush()
        monkeypatch.setattr(NetCDFBackend, "_sync_file", counted)
        store.note.write("fourth")
        assert store.note.read() == "fourth"  # applied (not synced) before the change
        store.other.write("new variable")
        store.flush()
        assert len(syncs_before_change) == 1  # before the journal (the flush's own: after)
    with writebehind.open(nc_path, "r") as store:
        assert store.note.read() == "fourth" and store.other.read() == "new variable"
