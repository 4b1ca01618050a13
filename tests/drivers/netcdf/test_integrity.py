"""Recovery acts only on proof, read-only never writes, and the path stays the user's.

Each test is a failure a user met (issue: "recovery never invents, moves or damages data").
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import writebehind
from writebehind import RecoveryNeededError, TruncatedFileError
from writebehind.cli import main
from writebehind.drivers.netcdf.superblock import read_superblock


def _closed_file(path: Path, frames: int = 40) -> None:
    with writebehind.open(path, "w") as store:
        for i in range(frames):
            store.traj.positions.append(np.full((1000, 3), float(i)))


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# -- a truncated copy is refused, never "repaired" -------------------------------------------
@pytest.fixture
def truncated(tmp_path: Path) -> Path:
    source = tmp_path / "run.nc"
    _closed_file(source)
    cut = tmp_path / "half.nc"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    source.unlink()
    return cut


@pytest.mark.parametrize("mode", ["r", "a", None])
def test_opening_a_truncated_file_raises_and_changes_nothing(truncated, mode):
    before = _tree(truncated.parent)
    with pytest.raises(TruncatedFileError, match="truncated") as caught:
        writebehind.open(truncated, mode)
    assert _tree(truncated.parent) == before
    assert caught.value.size == truncated.stat().st_size
    superblock = read_superblock(str(truncated))
    assert superblock is not None
    assert caught.value.expected_size == superblock.eof_in_file


def test_recover_refuses_a_truncated_file_and_changes_nothing(truncated):
    before = _tree(truncated.parent)
    with pytest.raises(TruncatedFileError):
        writebehind.recover(str(truncated))
    assert _tree(truncated.parent) == before


def test_inspect_of_a_truncated_file_fails_and_changes_nothing(truncated, capsys):
    before = _tree(truncated.parent)
    assert main(["inspect", str(truncated)]) == 1
    assert "truncated" in capsys.readouterr().err
    assert _tree(truncated.parent) == before


def test_read_of_a_truncated_file_fails_and_changes_nothing(truncated, capsys):
    before = _tree(truncated.parent)
    assert main(["read", str(truncated), "traj/positions", "--index", "0"]) == 1
    assert "truncated" in capsys.readouterr().err
    assert _tree(truncated.parent) == before


# -- read-only opens never write -----------------------------------------------------------------
_KILLED = """
import os, signal, sys
import numpy as np
import writebehind
store = writebehind.open(sys.argv[1], "w")
for i in range(200):
    store.x.append(np.full(20000, float(i)))
    if i % 20 == 19:
        store.flush()
store.late.append(1.0)  # a structural change left unflushed
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def killed(tmp_path: Path) -> Path:
    path = tmp_path / "run.nc"
    done = subprocess.run([sys.executable, "-c", _KILLED, str(path)], timeout=120)
    assert done.returncode < 0
    return path


def test_a_read_only_open_of_a_crashed_file_writes_nothing(killed):
    before = _tree(killed.parent)
    try:
        with writebehind.open(killed, "r") as store:
            assert len(store.x) == 200
    except RecoveryNeededError:
        pass  # also allowed: refused, with nothing changed
    assert _tree(killed.parent) == before


def test_inspect_of_a_crashed_file_writes_nothing(killed, capsys):
    before = _tree(killed.parent)
    main(["inspect", str(killed)])
    assert _tree(killed.parent) == before


def test_a_crashed_file_needing_a_rollback_is_refused_read_only(killed):
    from writebehind.drivers.netcdf.recovery import _ROLLBACK_MAGIC, _ROLLBACK_TRAILER
    from writebehind.drivers.netcdf.sidefiles import FileIdentity

    with open(killed, "rb") as file:
        identity = FileIdentity.of(file.fileno(), "")
    copy = Path(str(killed) + ".writebehind-rollback")
    length = killed.stat().st_size
    copy.write_bytes(
        killed.read_bytes() + identity.pack() + length.to_bytes(8, "little") + _ROLLBACK_MAGIC
    )
    assert copy.stat().st_size == length + _ROLLBACK_TRAILER
    before = _tree(killed.parent)
    with pytest.raises(RecoveryNeededError, match="writebehind recover"):
        writebehind.open(killed, "r")
    assert _tree(killed.parent) == before


# -- the path is the user's ----------------------------------------------------------------------
def test_w_on_a_fifo_raises_and_leaves_it(tmp_path):
    fifo = tmp_path / "run.nc"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        writebehind.open(fifo, "w")
    assert fifo.is_fifo()
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]


@pytest.mark.parametrize("mode", ["r", "a", None])
def test_other_modes_on_a_fifo_raise_instead_of_blocking(tmp_path, mode):
    fifo = tmp_path / "run.nc"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        writebehind.open(fifo, mode)


def test_w_on_a_socket_raises_and_leaves_it(tmp_path):
    path = tmp_path / "s.nc"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(OSError, match="socket"):
            writebehind.open(path, "w")
        assert path.is_socket()


def test_w_on_a_directory_raises_and_leaves_it(tmp_path):
    with pytest.raises(IsADirectoryError):
        writebehind.open(tmp_path, "w")
    assert tmp_path.is_dir()


@pytest.mark.parametrize("mode", ["w", "a", None])
def test_writing_through_a_symlink_lands_in_its_target_and_keeps_the_link(tmp_path, mode):
    target_dir = tmp_path / "scratch"
    target_dir.mkdir()
    target = target_dir / "run.nc"
    if mode == "a":
        _closed_file(target, frames=1)
    link = tmp_path / "run.nc"
    link.symlink_to(target)
    with writebehind.open(link, mode) as store:
        store.traj.positions.append(np.full((1000, 3), 7.0))
    assert link.is_symlink() and os.readlink(link) == str(target)
    with writebehind.open(target, "r") as store:
        assert store.traj.positions.read()[-1, 0, 0] == 7.0
    assert [p.name for p in tmp_path.iterdir() if p.name != "scratch"] == ["run.nc"]


@pytest.mark.parametrize("mode", ["w", "a", "r", None])
def test_a_missing_directory_is_named_at_open(tmp_path, mode):
    missing = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match="no/such") as caught:
        writebehind.open(missing / "run.nc", mode)
    assert "writebehind-new" not in str(caught.value)


def test_a_bytes_path_names_the_file(tmp_path):
    path = tmp_path / "bytes.nc"
    with writebehind.open(os.fsencode(path), "w") as store:
        store.x.append(1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["bytes.nc"]
    with writebehind.StorageInterface(writebehind.NetCDFIODriver(path, "r")) as store:
        assert store.x.read().tolist() == [1.0]


# -- side files never follow a planted link ------------------------------------------------------
@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_bytes(b"not writebehind's")
    return path


def test_a_link_planted_at_the_new_file_name_is_not_written_through(tmp_path, victim):
    path = tmp_path / "run.nc"
    Path(str(path) + ".writebehind-new").symlink_to(victim)
    with writebehind.open(path, "w") as store:
        store.x.append(1.0)
    assert victim.read_bytes() == b"not writebehind's"
    with writebehind.open(path, "r") as store:
        assert store.x.read().tolist() == [1.0]


@pytest.mark.parametrize("suffix", [".writebehind-rollback.partial", ".writebehind-undo"])
def test_a_link_planted_at_a_side_file_name_is_not_written_through(tmp_path, victim, suffix):
    path = tmp_path / "run.nc"
    with writebehind.open(path, "w") as store:
        for i in range(300):  # several chunks: the index journal is written
            store.x.append(np.full(1000, float(i)))
        store.flush()
        Path(str(path) + suffix).symlink_to(victim)
        for i in range(300):
            store.x.append(np.full(1000, float(i)))
            store.flush()
        store.y.append(1.0)  # a structural change: the rollback copy is taken
        store.flush()
    assert victim.read_bytes() == b"not writebehind's"


# -- a read never returns bytes the writer did not write -----------------------------------------
def _chunks(path: Path, variable: str) -> list[tuple[int, int, int]]:
    """(first entry, address, size) of each stored chunk of ``variable``, by h5py in its own
    process (not a second HDF5 library beside netCDF4's in this one)."""
    code = (
        "import h5py, json, sys; d = h5py.File(sys.argv[1], 'r', locking=False)[sys.argv[2]]; "
        "infos = [d.id.get_chunk_info(i) for i in range(d.id.get_num_chunks())]; "
        "print(json.dumps(sorted((i.chunk_offset[0], i.byte_offset, i.size) for i in infos)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), variable], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return [tuple(chunk) for chunk in json.loads(done.stdout)]


def _rows_file(path: Path, rows: int = 400) -> None:
    """A closed file whose variable x, checksummed, holds entry i = [i, i, ...] (8 KB)."""
    with writebehind.open(path, "w", checksums=True) as store:
        for i in range(rows):
            store.x.append(np.full(1000, float(i)))


def test_damaged_bytes_in_a_chunk_raise_naming_the_entries(nc_path):
    _rows_file(nc_path)
    (_, _, _), (first, address, size), (stop, _, _) = _chunks(nc_path, "x")[:3]
    with open(nc_path, "r+b") as file:
        file.seek(address + size // 2)
        file.write(b"\xff" * 16)
    with writebehind.open(nc_path, "r") as store:
        with pytest.raises(writebehind.DamagedDataError, match=f"{first}-{stop - 1}") as caught:
            store.x.read()
        assert caught.value.path == "x"
        assert caught.value.entries == [(first, stop)]
        assert store.x.read(slice(0, first))[:, 0].tolist() == list(range(first))
        assert store.x.read(slice(stop, 400))[:, 0].tolist() == list(range(stop, 400))


def test_a_file_created_by_default_has_no_checksums(nc_path):
    with writebehind.open(nc_path, "w") as store:
        store.x.append(np.zeros(3))
    import netCDF4

    with netCDF4.Dataset(nc_path) as dataset:
        assert not dataset["x"].filters()["fletcher32"]


def test_with_checksums_appendable_numeric_variables_are_checksummed(nc_path):
    _rows_file(nc_path, rows=1)
    import netCDF4

    with netCDF4.Dataset(nc_path) as dataset:
        assert dataset["x"].filters()["fletcher32"]


_TORN = """
import os, signal, sys
import numpy as np
import writebehind
store = writebehind.open(sys.argv[1], "w", checksums=True)
for i in range(203):  # not a multiple of a chunk's entries (8 of these, or 131)
    store.x.append(np.full(1000, float(i)))
store.flush()
for i in range(203, 220):
    store.x.append(np.full(1000, float(i)))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_chunk_torn_by_a_killed_flush_is_resealed_and_keeps_its_flushed_rows(nc_path):
    # A kill inside the write of a chunk a flush rewrites in place leaves old and new bytes
    # in it: the flushed rows have the same bytes in both, but the checksum fits neither.
    done = subprocess.run([sys.executable, "-c", _TORN, str(nc_path)], timeout=120)
    assert done.returncode < 0
    first, address, size = _chunks(nc_path, "x")[-1]
    assert first < 203 < first + size // 8000  # the chunk holding the first unflushed row
    with open(nc_path, "r+b") as file:  # rows past the flushed ones, half rewritten
        file.seek(address + (205 - first) * 8000)
        file.write(np.full(1000, -1.0).tobytes())
    report = writebehind.recover(str(nc_path))
    assert report.resealed_chunks == {"x": 1}
    with writebehind.open(nc_path, "a") as store:
        assert store.x.read()[:, 0].tolist() == list(range(203))
        store.x.append(np.full(1000, 203.0))
    with writebehind.open(nc_path, "r") as store:
        assert store.x.read()[:, 0].tolist() == list(range(204))


def test_inspect_verify_reports_the_damaged_variable_and_its_entries(nc_path, capsys):
    _rows_file(nc_path)
    first, address, size = _chunks(nc_path, "x")[1]
    stop = _chunks(nc_path, "x")[2][0]
    with writebehind.open(nc_path, "a") as store:
        store.y.append(np.zeros(3))
    with open(nc_path, "r+b") as file:
        file.seek(address + size // 2)
        file.write(b"\xff" * 16)
    assert main(["inspect", str(nc_path), "--verify"]) == 1
    captured = capsys.readouterr()
    assert f"damaged: entries {first}-{stop - 1} fail their checksum" in captured.out
    assert "damaged: x" in captured.err
    assert main(["inspect", str(nc_path)]) == 0  # without --verify the data is not read


def test_inspect_verify_of_an_intact_file_succeeds(nc_path, capsys):
    _rows_file(nc_path, rows=20)
    assert main(["inspect", str(nc_path), "--verify"]) == 0
    assert "damaged" not in capsys.readouterr().out
