"""The files writebehind keeps beside a data file, and the proof that they belong to it.

A store writing ``run.nc`` may keep, for the length of a flush or of the run:

- ``run.nc.writebehind-new``: the file being created, renamed to ``run.nc`` once valid;
- ``run.nc.writebehind-undo``: the undo journal of the chunk indexes (``journal``);
- ``run.nc.writebehind-rollback`` (and ``.partial`` while it is written): the copy taken
  before a flush that changes the file's structure (``recovery``);
- ``run.nc.writebehind-recovering``: the mark of a recovery in progress (``recoverymark``).

A killed run leaves them behind, and the path may then hold another file: a run restarted
with ``"w"``, a copy, a file another program wrote. Applying a side file to a file it was not
taken from corrupts acknowledged data, so every side file that recovery may apply starts with
the :class:`FileIdentity` of its file, and recovery applies it only when that identity is
proven to be the file's (:meth:`FileIdentity.proves`). A file system reuses inode numbers at
once, so the inode alone proves nothing: the identity adds the inode's *generation* (a number
ext4, XFS, btrfs and tmpfs draw anew each time they reuse an inode, read with the
``FS_IOC_GETVERSION`` ioctl) and the file's own random id (the root attribute
``writebehind_file_id`` that writebehind writes into every file it creates).

Side files are created exclusively and never through a symlink (:func:`create_exclusive`):
a link planted at a side file's name cannot make writebehind overwrite another file.
"""

from __future__ import annotations

import array
import contextlib
import glob
import logging
import os
import struct
import uuid
from dataclasses import dataclass

from ..._bookkeeping import FILE_ID_ATTR

__all__ = [
    "FILE_ID_ATTR",
    "FileIdentity",
    "close_and_remove",
    "create_exclusive",
    "fsync_directory",
    "log_unproven",
    "new_file_id",
    "remove_side_files",
    "side_files",
]

logger = logging.getLogger("writebehind")

SIDE_INFIX = ".writebehind-"
NEW_SUFFIX = SIDE_INFIX + "new"
UNDO_SUFFIX = SIDE_INFIX + "undo"
ROLLBACK_SUFFIX = SIDE_INFIX + "rollback"
RECOVERING_SUFFIX = SIDE_INFIX + "recovering"

_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long): the inode's generation (Linux)
_NO_GENERATION = -1
_IDENTITY = struct.Struct("<QQq16s")


def new_file_id() -> str:
    """A random id for a new file (128 bits, as 32 hex digits)."""
    return uuid.uuid4().hex


def _generation(fd: int) -> int | None:
    """The generation of the inode open as ``fd``; None where the file system has none."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    buffer = array.array("l", [0])
    try:
        fcntl.ioctl(fd, _FS_IOC_GETVERSION, buffer, True)
    except OSError:  # ENOTTY: a file system without generations (NFS, overlayfs...)
        return None
    return int(buffer[0])


def _id_bytes(file_id: str) -> bytes:
    try:
        raw = bytes.fromhex(file_id)
    except ValueError:
        return bytes(16)
    return raw if len(raw) == 16 else bytes(16)


@dataclass(frozen=True)
class FileIdentity:
    """What identifies one file, whatever name it has now."""

    device: int
    inode: int
    generation: int | None  # None: the file system does not number inode generations
    file_id: str  # "" for a file writebehind did not create (no writebehind_file_id)

    SIZE = _IDENTITY.size

    @classmethod
    def of(cls, fd: int, file_id: str) -> FileIdentity:
        """The identity of the file open as ``fd``, whose root attribute says ``file_id``."""
        stat = os.fstat(fd)
        return cls(
            stat.st_dev,
            stat.st_ino,
            _generation(fd),
            file_id if _id_bytes(file_id) != bytes(16) else "",
        )

    def pack(self) -> bytes:
        generation = _NO_GENERATION if self.generation is None else self.generation
        return _IDENTITY.pack(self.device, self.inode, generation, _id_bytes(self.file_id))

    @classmethod
    def unpack(cls, data: bytes) -> FileIdentity | None:
        if len(data) < cls.SIZE:
            return None
        device, inode, generation, raw_id = _IDENTITY.unpack_from(data)
        return cls(
            device,
            inode,
            None if generation == _NO_GENERATION else generation,
            raw_id.hex() if raw_id != bytes(16) else "",
        )

    def disproves(self, fd: int) -> bool:
        """Whether this identity is certainly not that of the file open as ``fd`` (another
        inode, or the same inode number reused): without reading the file."""
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != (self.device, self.inode):
            return True
        generation = _generation(fd)
        return None not in (generation, self.generation) and generation != self.generation

    def proves(self, fd: int, file_id: str | None) -> bool:
        """Whether this identity, read from a side file, is that of the file open as ``fd``.

        ``file_id`` is what the file's root attribute says, or None when the file cannot be
        read (a flush that changed its structure was interrupted). The device and inode
        must match, and nothing may contradict: a generation or an id known on both sides
        must be equal. At least one of them must be known on both sides, since inode
        numbers are reused at once.
        """
        stat = os.fstat(fd)
        if (stat.st_dev, stat.st_ino) != (self.device, self.inode):
            return False
        generation = _generation(fd)
        proven = False
        if generation is not None and self.generation is not None:
            if generation != self.generation:
                return False
            proven = True
        if file_id is not None and (file_id or self.file_id):
            if file_id != self.file_id:
                return False
            proven = proven or bool(file_id)
        return proven


def side_files(path: str) -> list[str]:
    """Every side file of ``path`` there is (any kind, this version's names or older ones)."""
    return sorted(glob.glob(glob.escape(path) + SIDE_INFIX + "*"))


def remove_side_files(path: str, why: str, keep: str = "") -> list[str]:
    """Remove every side file of ``path`` but ``keep`` (never following a link); the ones
    removed."""
    removed = []
    for side in side_files(path):
        if side == keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(side)
            removed.append(side)
    if removed:
        logger.info("writebehind: %s: removed %s (%s)", path, ", ".join(removed), why)
    return removed


def log_unproven(path: str, side: str, identity: FileIdentity | None, whose: str) -> None:
    """Log that the side file ``side`` of ``path`` proved nothing and is removed: it is
    incomplete (no ``identity`` could be read from it), or it is ``whose``."""
    logger.warning(
        "writebehind: %s: ignored and removed %s: %s",
        path,
        side,
        "it is incomplete" if identity is None else whose,
    )


def create_exclusive(path: str) -> int:
    """Create ``path`` for writing and return its descriptor, replacing a stale file or link
    there but never writing through a link or into a file that was there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a link is removed, not followed
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)


def fsync_directory(directory: str) -> None:
    """fsync a directory, so that a file created, renamed or removed in it stays so after a
    power loss."""
    fd = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def close_and_remove(fd: int, path: str) -> None:
    """Close a side file a store kept open and remove it (its file was closed cleanly)."""
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
