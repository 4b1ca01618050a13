"""The mark of a recovery in progress: a kill during recovery is finished by the next open.

Recovery has to clear the superblock's open-for-writing flag early: its later steps (the
reseal of torn chunks, the cut of variable-length rows past the committed length) open the
file in HDF5, which refuses a file marked open for writing, and HDF5 clears the flag itself
when it closes the file. From the moment the flag is clear until the last step is done, the
file looks closed cleanly although recovery is not finished: a kill there left variable-
length rows whose heap objects never reached the file (the next append to a dict record
failed with "HDF error"), or an undo journal that the next open discarded as stale.

So before recovery changes any byte, it writes ``FILE.writebehind-recovering``, holding the
:class:`~writebehind.drivers.netcdf.sidefiles.FileIdentity` of the file, fsyncs it and its
directory, and removes it (fsyncing the directory) only once every step is done. An open that
may write and finds a mark proven to be the file's runs the whole recovery again, even though
the flag is clear: every step is idempotent. A mark that is incomplete or does not prove to
be the file's is ignored, removed and logged, like every side file (``sidefiles``).

The mark records the file's id (``writebehind_file_id``) once recovery has read it, so a
file system without inode generations proves the mark by that id; a kill before the id was
read leaves a mark that such a file system cannot prove (docs/durability.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from ..._errors import RecoveryError
from .sidefiles import (
    RECOVERING_SUFFIX,
    FileIdentity,
    create_exclusive,
    fsync_directory,
    log_unproven,
)

__all__ = ["begin", "exists", "finish", "load", "mark_path", "proven", "record_file_id"]


_MAGIC = b"WBRECOV1"
_SIZE = len(_MAGIC) + FileIdentity.SIZE


def mark_path(path: str) -> str:
    """Where the mark of a recovery of ``path`` in progress is kept."""
    return path + RECOVERING_SUFFIX


def exists(path: str) -> bool:
    """Whether there is a mark (complete or not) beside ``path``."""
    return os.path.lexists(mark_path(path))


def load(path: str) -> FileIdentity | None:
    """The identity the mark beside ``path`` records; None if there is none, or it is
    incomplete (a kill while it was written: recovery had not changed a byte then)."""
    try:
        with open(mark_path(path), "rb") as mark:
            data = mark.read(_SIZE + 1)
    except (FileNotFoundError, IsADirectoryError):
        return None
    if len(data) != _SIZE or not data.startswith(_MAGIC):
        return None
    return FileIdentity.unpack(data[len(_MAGIC) :])


def begin(path: str, fd: int) -> None:
    """Write the mark for the file open as ``fd``, on stable storage before recovery
    changes a byte of it (its id is not known yet: see :func:`record_file_id`).

    Raises
    ------
    RecoveryError
        The mark cannot be written (a full disk, a directory that may not be written):
        nothing was changed.
    """
    try:
        _write(path, FileIdentity.of(fd, ""))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(mark_path(path) + ".partial")
        raise RecoveryError(
            f"{path!r} was left by a crash and must be recovered, which first writes "
            f"{mark_path(path)!r} beside it, and that failed ({exc}). Nothing was changed: "
            "free some space (or allow writing to its directory) and open it again."
        ) from exc


def record_file_id(path: str, fd: int, file_id: str | None) -> None:
    """Add the file's id to the mark, once recovery has read it: on a file system without
    inode generations, only the id proves the mark."""
    identity = FileIdentity.of(fd, file_id or "")
    if identity.file_id and identity != load(path):
        _write(path, identity)


def _write(path: str, identity: FileIdentity) -> None:
    """Write the mark under a temporary name and rename it into place: a mark is always
    whole, and replacing one never leaves a moment without it."""
    partial = mark_path(path) + ".partial"
    fd = create_exclusive(partial)  # never through a link planted at its name
    try:
        os.write(fd, _MAGIC + identity.pack())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, mark_path(path))
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def proven(path: str, fd: int, read_file_id: Callable[[], str | None]) -> bool:
    """Whether the mark beside ``path`` proves to be that of the file open as ``fd``; one
    that does not is removed, and logged. ``read_file_id`` reads the file's id (a probe in
    a subprocess), called only when the inode's generation cannot decide."""
    identity = load(path)
    if identity is None or identity.disproves(fd):
        proof = False
    else:  # the generation proves it, or the id where there is no generation
        proof = identity.proves(fd, None) or (
            bool(identity.file_id) and identity.proves(fd, read_file_id())
        )
    if proof:
        return True
    log_unproven(path, mark_path(path), identity, "it does not belong to this file")
    finish(path)
    return False


def finish(path: str) -> None:
    """Remove the mark, once every step of the recovery is done (or the file moved aside)."""
    removed = False
    for leftover in (mark_path(path) + ".partial", mark_path(path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
            removed = True
    if removed:
        fsync_directory(os.path.dirname(os.path.abspath(path)))
