"""The identity side files record, and when it proves they belong to a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from writebehind.drivers.netcdf.sidefiles import (
    FileIdentity,
    create_exclusive,
    new_file_id,
    remove_side_files,
    side_files,
)


@pytest.fixture
def fd(tmp_path: Path):
    path = tmp_path / "run.nc"
    path.write_bytes(b"data")
    descriptor = os.open(path, os.O_RDONLY)
    yield descriptor
    os.close(descriptor)


def _generation_or_skip(fd: int) -> int:
    generation = FileIdentity.of(fd, "").generation
    if generation is None:
        pytest.skip("this file system has no inode generations")
    return generation


def test_an_identity_round_trips_through_its_bytes(fd):
    identity = FileIdentity.of(fd, new_file_id())
    assert FileIdentity.unpack(identity.pack()) == identity
    assert len(identity.pack()) == FileIdentity.SIZE


def test_a_file_without_an_id_packs_and_unpacks_as_no_id(fd):
    identity = FileIdentity.of(fd, "not hex")
    assert identity.file_id == ""
    assert FileIdentity.unpack(identity.pack()) == identity


def test_the_files_own_identity_proves_it(fd):
    file_id = new_file_id()
    assert FileIdentity.of(fd, file_id).proves(fd, file_id)


def test_another_inode_never_proves(fd):
    own = FileIdentity.of(fd, new_file_id())
    other = FileIdentity(own.device, own.inode + 1, own.generation, own.file_id)
    assert not other.proves(fd, own.file_id)
    assert other.disproves(fd)


def test_a_reused_inode_number_with_another_generation_never_proves(fd):
    generation = _generation_or_skip(fd)
    own = FileIdentity.of(fd, new_file_id())
    reused = FileIdentity(own.device, own.inode, generation + 1, own.file_id)
    assert not reused.proves(fd, own.file_id)
    assert not reused.proves(fd, None)
    assert reused.disproves(fd)


def test_another_file_id_never_proves_even_with_the_same_inode(fd):
    own = FileIdentity.of(fd, new_file_id())
    assert not own.proves(fd, new_file_id())


def test_the_generation_alone_proves_when_the_file_id_cannot_be_read(fd):
    _generation_or_skip(fd)
    assert FileIdentity.of(fd, new_file_id()).proves(fd, None)


def test_without_generations_only_a_matching_file_id_proves(fd):
    own = FileIdentity.of(fd, new_file_id())
    blind = FileIdentity(own.device, own.inode, None, own.file_id)
    assert blind.proves(fd, own.file_id)
    assert not blind.proves(fd, None)  # the file's id could not be read: no proof
    anonymous = FileIdentity(own.device, own.inode, None, "")
    assert not anonymous.proves(fd, "")  # neither side knows anything but the inode


def test_side_files_are_listed_and_removed_but_not_other_files(tmp_path):
    path = tmp_path / "run[1].nc"  # glob characters in the name
    for name in ("run[1].nc.writebehind-undo", "run[1].nc.writebehind-meta", "other.nc"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "run[1].nc.unrecoverable-20260101T000000").write_bytes(b"kept")
    assert [Path(p).name for p in side_files(str(path))] == [
        "run[1].nc.writebehind-meta",
        "run[1].nc.writebehind-undo",
    ]
    remove_side_files(str(path), "a test")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other.nc",
        "run[1].nc.unrecoverable-20260101T000000",
    ]


def test_creating_a_side_file_replaces_a_planted_link_and_never_writes_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    side = tmp_path / "run.nc.writebehind-undo"
    side.symlink_to(victim)
    descriptor = create_exclusive(str(side))
    try:
        os.write(descriptor, b"journal")
    finally:
        os.close(descriptor)
    assert victim.read_bytes() == b"keep me"
    assert not side.is_symlink() and side.read_bytes() == b"journal"
