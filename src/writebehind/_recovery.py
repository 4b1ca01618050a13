"""Crash recovery of a NetCDF-4 (HDF5) file that a killed process left behind.

What a crash leaves, and what is done about it (docs/durability.md tells the whole story):

- HDF5 marks the superblock "open for writing" (file consistency flags) when it opens a file
  for writing and clears the mark when it closes it; its end-of-allocation address (EOA) is
  written last in every flush. A process killed while appending leaves the mark set and,
  often, the file longer than the EOA; killed in the middle of a flush, it can leave object
  headers that point past the EOA, and then HDF5 refuses to read the file ("addr overflow").
- :func:`recover` repairs that as ``h5clear -s --increment=0`` does: it rewrites the
  superblock with the marks cleared and the EOA raised to the file's size, and a fresh
  Jenkins lookup3 checksum. Nothing else in the file is touched. The original superblock
  bytes are kept (in the report and the log, and restored if the repair does not help).
- Rows past a variable's committed length (the ``writebehind_length`` attribute written by
  each flush) are not trusted: the store's catalog ignores them and later appends overwrite
  them. The report counts them.
- Whether a file is readable is decided by opening it with netCDF4 in a *subprocess* with a
  timeout, because a damaged HDF5 file can hang or crash the library.
- A file that stays unreadable is moved aside under a new name (never overwritten, never
  deleted) and :class:`~writebehind.RecoveryError` says where it went.

A file in use by another process (HDF5 holds a ``flock`` on every file it has open) is never
touched. A cleanly closed file costs one read of its first bytes and a ``stat``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ._errors import RecoveryError

__all__ = [
    "RecoveryReport",
    "Superblock",
    "create_atomically",
    "drop_rollback_copy",
    "fsync_directory",
    "keep_rollback_copy",
    "lookup3",
    "read_superblock",
    "recover",
]

logger = logging.getLogger("writebehind")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PROBE_TIMEOUT_SECONDS = 60.0
_SIGNATURE_OFFSETS = (0, *(512 << n for n in range(12)))  # a user block may precede it


# -- the superblock ------------------------------------------------------------------------
@dataclass(frozen=True)
class Superblock:
    """The fields of an HDF5 superblock that recovery reads or rewrites."""

    offset: int  # where the superblock starts in the file
    version: int
    offset_size: int
    flags: int  # file consistency flags: non-zero while a writer has the file open
    base_address: int
    eof_address: int  # end of allocation, relative to base_address
    raw: bytes  # every byte of it, as read

    @property
    def eof_in_file(self) -> int:
        """The end of allocation as an absolute position in the file."""
        return self.base_address + self.eof_address

    def with_eof(self, eof_in_file: int) -> bytes:
        """The superblock's bytes with the flags cleared and the EOA set (checksum redone)."""
        o = self.offset_size
        raw = bytearray(self.raw)
        eof = (eof_in_file - self.base_address).to_bytes(o, "little")
        if self.version >= 2:
            raw[11] = 0
            raw[12 + 2 * o : 12 + 3 * o] = eof
            raw[12 + 4 * o : 16 + 4 * o] = struct.pack("<I", lookup3(bytes(raw[: 12 + 4 * o])))
        else:
            raw[20:24] = bytes(4)
            start = _v01_eof_offset(self.version, o)
            raw[start : start + o] = eof
        return bytes(raw)


def _v01_eof_offset(version: int, offset_size: int) -> int:
    # version 0: 24 bytes of fixed fields, version 1: 28; then base, free-space, EOF addresses
    return (24 if version == 0 else 28) + 2 * offset_size


def read_superblock(path: str) -> Superblock | None:
    """The superblock of the HDF5 file at ``path``; None if it is not an HDF5 file.

    Raises
    ------
    RecoveryError
        The signature is there but the superblock is damaged (a bad checksum or an unknown
        version): no repair is attempted on such a file.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        for offset in _SIGNATURE_OFFSETS:
            if offset + len(HDF5_SIGNATURE) > size:
                return None
            file.seek(offset)
            head = file.read(96)
            if head.startswith(HDF5_SIGNATURE):
                return _parse_superblock(path, offset, head)
    return None


def _parse_superblock(path: str, offset: int, head: bytes) -> Superblock:
    if len(head) < 12:
        raise RecoveryError(f"{path!r}: the HDF5 superblock is cut short")
    version = head[8]
    if version >= 2:
        if version > 3:
            raise RecoveryError(f"{path!r}: HDF5 superblock version {version} is not known")
        o = head[9]
        size = 16 + 4 * o
        if o not in (2, 4, 8) or len(head) < size:
            raise RecoveryError(f"{path!r}: the HDF5 superblock is damaged")
        raw = head[:size]
        (stored,) = struct.unpack("<I", raw[size - 4 :])
        if lookup3(raw[: size - 4]) != stored:
            raise RecoveryError(f"{path!r}: the HDF5 superblock checksum does not match")
        base = int.from_bytes(raw[12 : 12 + o], "little")
        eof = int.from_bytes(raw[12 + 2 * o : 12 + 3 * o], "little")
        return Superblock(offset, version, o, raw[11], base, eof, raw)
    o = head[13]
    if o not in (2, 4, 8):
        raise RecoveryError(f"{path!r}: the HDF5 superblock is damaged")
    eof_at = _v01_eof_offset(version, o)
    base_at = eof_at - 2 * o
    raw = head[: eof_at + o]
    (flags,) = struct.unpack("<I", raw[20:24])
    base = int.from_bytes(raw[base_at : base_at + o], "little")
    eof = int.from_bytes(raw[eof_at : eof_at + o], "little")
    return Superblock(offset, version, o, flags, base, eof, raw)


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & mask
    pos = 0
    while length > 12:
        a = (a + int.from_bytes(data[pos : pos + 4], "little")) & mask
        b = (b + int.from_bytes(data[pos + 4 : pos + 8], "little")) & mask
        c = (c + int.from_bytes(data[pos + 8 : pos + 12], "little")) & mask
        # mix(a, b, c)
        a = (a - c) & mask
        a ^= rot(c, 4)
        c = (c + b) & mask
        b = (b - a) & mask
        b ^= rot(a, 6)
        a = (a + c) & mask
        c = (c - b) & mask
        c ^= rot(b, 8)
        b = (b + a) & mask
        a = (a - c) & mask
        a ^= rot(c, 16)
        c = (c + b) & mask
        b = (b - a) & mask
        b ^= rot(a, 19)
        a = (a + c) & mask
        c = (c - b) & mask
        c ^= rot(b, 4)
        b = (b + a) & mask
        length -= 12
        pos += 12
    if length == 0:
        return c
    tail = data[pos:] + bytes(12 - length)
    a = (a + int.from_bytes(tail[0:4], "little")) & mask
    b = (b + int.from_bytes(tail[4:8], "little")) & mask
    c = (c + int.from_bytes(tail[8:12], "little")) & mask
    # final(a, b, c)
    c ^= b
    c = (c - rot(b, 14)) & mask
    a ^= c
    a = (a - rot(c, 11)) & mask
    b ^= a
    b = (b - rot(a, 25)) & mask
    c ^= b
    c = (c - rot(b, 16)) & mask
    a ^= c
    a = (a - rot(c, 4)) & mask
    b ^= a
    b = (b - rot(a, 14)) & mask
    c ^= b
    c = (c - rot(b, 24)) & mask
    return c


# -- the report ----------------------------------------------------------------------------
@dataclass
class RecoveryReport:
    """What :func:`recover` found and did (``store.storage_driver.recovery``)."""

    path: str
    clean: bool  # closed cleanly: nothing to recover
    file_size: int = 0
    superblock_version: int | None = None
    superblock_repaired: bool = False
    old_eof: int = 0  # end of allocation (absolute) before the repair
    new_eof: int = 0
    original_superblock: bytes = b""  # the bytes the repair replaced
    readable_before: bool | None = None  # None: not probed
    readable_after: bool | None = None
    probe_error: str = ""  # what netCDF4 said when it could not read the file
    uncommitted_rows: dict[str, int] = field(default_factory=dict)  # past the committed length
    moved_to: str | None = None  # where an unrecoverable file was kept aside
    rolled_back: bool = False  # replaced by the copy taken before an interrupted flush
    cut_rows: dict[str, int] = field(default_factory=dict)  # variable-length rows removed
    cut_error: str = ""  # why they could not be removed

    @property
    def recovered(self) -> bool:
        """Whether the file was left by a crash and is readable now."""
        return not self.clean and bool(self.readable_after)

    def summary(self) -> dict[str, Any]:
        """The report as plain JSON-able values."""
        return {
            "path": self.path,
            "clean": self.clean,
            "file_size": self.file_size,
            "superblock_version": self.superblock_version,
            "superblock_repaired": self.superblock_repaired,
            "old_eof": self.old_eof,
            "new_eof": self.new_eof,
            "original_superblock": self.original_superblock.hex(),
            "readable_before": self.readable_before,
            "readable_after": self.readable_after,
            "probe_error": self.probe_error,
            "uncommitted_rows": dict(self.uncommitted_rows),
            "moved_to": self.moved_to,
            "rolled_back": self.rolled_back,
            "cut_rows": dict(self.cut_rows),
            "cut_error": self.cut_error,
        }

    def describe(self) -> str:
        """A few lines for people (the log and ``writebehind recover``)."""
        if self.clean and self.superblock_version is None:
            lines = [f"{self.path}:"]
        elif self.clean:
            lines = [f"{self.path}: closed cleanly"]
        else:
            lines = [f"{self.path}: left open by a process that did not close it (a crash?)"]
        if self.probe_error:
            lines.append(f"  netCDF4 could not read it: {self.probe_error}")
        if self.superblock_repaired:
            lines.append(
                f"  superblock v{self.superblock_version} repaired: end of allocation "
                f"{self.old_eof} -> {self.new_eof} (file size {self.file_size}), open-for-"
                f"writing flags cleared; original bytes {self.original_superblock.hex()}"
            )
        for path, rows in sorted(self.uncommitted_rows.items()):
            lines.append(f"  {path}: {rows} row(s) past the last flush ignored")
        for path, rows in sorted(self.cut_rows.items()):
            lines.append(f"  {path}: {rows} variable-length row(s) past the last flush removed")
        if self.cut_error:
            lines.append(
                "  could not remove variable-length rows past the last flush "
                f"({self.cut_error}): appending to them will fail"
            )
        if self.rolled_back:
            lines.append(
                "  a flush that was changing its structure had left it unreadable: rolled "
                f"back to the copy taken before that flush; the broken file is {self.moved_to}"
            )
        elif self.moved_to:
            lines.append(f"  unrecoverable: moved aside to {self.moved_to}")
        elif self.readable_after and not self.clean:
            lines.append("  recovered: every flushed entry is readable")
        elif self.readable_after is False and not self.probe_error:
            lines.append("  netCDF4 cannot read it")
        if len(lines) == 1 and self.clean:
            lines[0] += ", nothing to recover"
        elif self.superblock_version is None:
            lines = [lines[0] + lines[1][1:]]
        return "\n".join(lines)


# -- recovery ------------------------------------------------------------------------------
def needs_recovery(path: str) -> bool:
    """Whether the HDF5 file at ``path`` was left open for writing (cheap: no HDF5 call)."""
    try:
        superblock = read_superblock(path)
    except RecoveryError:
        return True
    if superblock is None:
        return False
    return superblock.flags != 0 or superblock.eof_in_file != os.path.getsize(path)


def recover(path: str, *, force: bool = False) -> RecoveryReport:
    """Make the file a killed writer left at ``path`` readable again, if it needs it.

    A cleanly closed file is left alone (only its superblock is read) unless ``force``, which
    also probes it. Otherwise the file is probed with netCDF4 in a subprocess, its superblock
    repaired if its flags are set or its end of allocation differs from the file's size,
    and probed again.

    Returns
    -------
    RecoveryReport
        Also logged (INFO when something was recovered) on the ``writebehind`` logger.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    RecoveryError
        The file is still unreadable: it was moved aside (``moved_to``) and the message says
        where; or it is in use by another process, or its superblock is damaged (which a
        kill cannot do), and it was not touched.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)  # FileNotFoundError as promised
    rollback = rollback_path(path)
    has_rollback = os.path.exists(rollback)
    try:
        superblock = read_superblock(path)
    except RecoveryError as exc:
        # A flush writes the superblock in one small write, so a kill cannot leave a bad
        # checksum: this damage has another cause. Roll back if a copy was taken before an
        # interrupted flush; otherwise leave the file as it is and say why it cannot open.
        if has_rollback:
            report = RecoveryReport(path, clean=False, file_size=size, probe_error=str(exc))
            with _exclusive(path) as fd:
                if fd is None:
                    raise _in_use(path) from exc
                return _roll_back(path, report, str(exc))
        raise
    if superblock is None:  # not HDF5: the open reports what it is
        report = RecoveryReport(path, clean=True, file_size=size)
        if force:
            report.readable_after = False
            report.probe_error = "not an HDF5 file (no HDF5 signature)"
        return report
    clean = superblock.flags == 0 and superblock.eof_in_file == size
    report = RecoveryReport(
        path,
        clean=clean,
        file_size=size,
        superblock_version=superblock.version,
        old_eof=superblock.eof_in_file,
        new_eof=superblock.eof_in_file,
    )
    if clean and not force:
        if has_rollback:  # closed cleanly after the flush it guarded: stale
            drop_rollback_copy(path)
        return report
    with _exclusive(path) as fd:
        if fd is None:
            if clean:
                return report  # closed cleanly and open elsewhere now: nothing to do
            raise _in_use(path)
        # A file left by a crash is repaired whatever a first probe would say, so the open
        # path probes once, after the repair; ``force`` (the CLI) also probes before.
        after = before = _probe(path) if force else None
        if before is not None:
            report.readable_before = before.ok
            report.probe_error = before.error
        if not clean:
            _repair_superblock(fd, superblock, size, report)
            after = _probe(path)
        assert after is not None
        report.readable_after = after.ok
        report.uncommitted_rows = after.uncommitted_rows
        report.probe_error = report.probe_error or after.error
        if after.ok and after.vlen_committed and (force or not clean):
            _cut_vlen_rows(path, after, report)
        if not after.ok:
            if report.superblock_repaired:
                _restore(fd, superblock, size)
                report.superblock_repaired = False
            if clean:  # not left by a crash: the open reports what is wrong with it
                return report
            if has_rollback:
                return _roll_back(path, report, after.error)
            _give_up(path, report, after.error)
    if has_rollback:  # the flush it guarded did not break the file: not needed
        drop_rollback_copy(path)
    if not clean:
        logger.warning("writebehind: %s", report.describe())
    return report


def _repair_superblock(fd: int, superblock: Superblock, size: int, report: RecoveryReport) -> None:
    new_eof = max(size, superblock.eof_in_file)
    if size < new_eof:
        os.ftruncate(fd, new_eof)  # HDF5 refuses a file shorter than its EOA
    os.pwrite(fd, superblock.with_eof(new_eof), superblock.offset)
    os.fsync(fd)
    report.superblock_repaired = True
    report.original_superblock = superblock.raw
    report.new_eof = new_eof
    logger.info(
        "writebehind: %s: repairing the superblock (end of allocation %d -> %d, flags %d -> "
        "0); original bytes %s",
        report.path,
        superblock.eof_in_file,
        new_eof,
        superblock.flags,
        superblock.raw.hex(),
    )


def _cut_vlen_rows(path: str, probed: _ProbeResult, report: RecoveryReport) -> None:
    """Clear variable-length rows past the committed length (see _SHRINK).

    Not guarded by a copy (a copy of a large file at every recovery could fill the disk):
    HDF5 rewrites the last chunk of each such variable in place, its rows below the
    committed length with the same bytes, and its object header; it allocates nothing.
    """
    problem = _cut_uncommitted_rows(path, probed.vlen_committed)
    if problem:
        logger.error("writebehind: %s: could not clear uncommitted rows: %s", path, problem)
        report.cut_error = problem
        return
    report.cut_rows = {
        name: probed.uncommitted_rows[name]
        for name in probed.vlen_committed
        if name in probed.uncommitted_rows
    }
    for name in report.cut_rows:
        report.uncommitted_rows.pop(name, None)


def _restore(fd: int, superblock: Superblock, size: int) -> None:
    os.pwrite(fd, superblock.raw, superblock.offset)
    os.ftruncate(fd, size)
    os.fsync(fd)


def _roll_back(path: str, report: RecoveryReport, error: str) -> RecoveryReport:
    """Put the rollback copy in place of the broken file (kept aside) and recover that."""
    aside = _aside_name(path)
    os.link(path, aside)  # the broken bytes stay, under a new name
    os.replace(rollback_path(path), path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    logger.warning(
        "writebehind: %s: the flush that was changing its structure was interrupted and left "
        "it unreadable (%s); rolled back to the copy taken before that flush (the broken "
        "file is kept as %s)",
        path,
        error,
        aside,
    )
    restored = recover(path)
    restored.rolled_back = True
    restored.moved_to = aside
    restored.probe_error = error
    return restored


def _aside_name(path: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    aside = f"{path}.unrecoverable-{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.unrecoverable-{stamp}-{n}"
    return aside


def _in_use(path: str) -> RecoveryError:
    return RecoveryError(
        f"{path!r} was not closed cleanly but another process has it open (a running "
        "simulation?); writebehind does not touch a file in use. Close it there, or wait "
        "for that process to end, and open it again."
    )


def _give_up(path: str, report: RecoveryReport, error: str) -> NoReturn:
    """Move the unreadable file aside and raise RecoveryError saying where."""
    aside = _aside_name(path)
    os.rename(path, aside)  # same directory, so never a copy: the bytes stay as they were
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    report.moved_to = aside
    logger.error("writebehind: %s", report.describe())
    raise RecoveryError(
        f"{path!r} was left damaged by a crash and could not be recovered ({error}); it was "
        f"moved aside, unchanged, to {aside!r}. Opening {path!r} again starts a new file.",
        report=report,
    )


def fsync_directory(directory: str) -> None:
    """fsync a directory, so that a file created or renamed in it survives a power loss."""
    fd = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _exclusive:
    """An exclusive ``flock`` on the file for the length of the repair; yields None if the
    file is locked (HDF5 holds a ``flock`` on every file it has open)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self) -> int | None:
        self.fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            return None
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock


# -- creating a file ---------------------------------------------------------------------
NEW_SUFFIX = ".writebehind-new"


def create_atomically(path: str) -> Any:
    """Create a NetCDF-4 file at ``path`` that is valid from the moment it has that name.

    netCDF4 creates it under a temporary name, syncs it and renames it over ``path``: a kill
    during the creation leaves at most a stray ``path + NEW_SUFFIX``, never a half-written
    file under the user's name (which recovery could only move aside), and an existing file
    at ``path`` stays intact until the rename. Returns the open ``netCDF4.Dataset``.

    Raises
    ------
    RecoveryError
        A file at ``path`` is open in another process (HDF5 holds its lock); it is left alone.
    """
    import netCDF4

    if os.path.exists(path):
        with _exclusive(path) as fd:
            if fd is None:
                raise RecoveryError(
                    f"cannot create {path!r}: the file there is open in another process (or "
                    "still open in this one); close it first"
                )
    partial = path + NEW_SUFFIX
    dataset = netCDF4.Dataset(partial, "w", format="NETCDF4")
    try:
        dataset.sync()
        os.replace(partial, path)
    except BaseException:
        dataset.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return dataset


# -- the rollback copy ---------------------------------------------------------------------
ROLLBACK_SUFFIX = ".writebehind-rollback"


def rollback_path(path: str) -> str:
    """Where the rollback copy of ``path`` is kept during a flush that changes its structure."""
    return path + ROLLBACK_SUFFIX


def keep_rollback_copy(path: str, durable: bool) -> str:
    """Copy the file as it is on disk to its rollback copy; returns the copy's path.

    Called before a flush that creates groups or variables or changes attributes: HDF5
    rewrites the parent's object header in place and writes the new objects after it, so a
    kill in between leaves a link to an object that is not there and the whole file
    unreadable. The copy is written under a temporary name and renamed, so it exists only
    when complete; with ``durable`` it is fsynced (with its directory) before the flush
    starts changing the file.
    """
    target = rollback_path(path)
    partial = target + ".partial"
    with open(path, "rb") as source, open(partial, "wb") as copy:
        remaining = os.fstat(source.fileno()).st_size
        offset = 0
        while remaining > 0:  # in the kernel; a reflink where the file system can
            done = os.copy_file_range(source.fileno(), copy.fileno(), remaining, offset, offset)
            if done == 0:
                break
            offset += done
            remaining -= done
        if durable:
            os.fsync(copy.fileno())
    os.replace(partial, target)
    if durable:
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    return target


def drop_rollback_copy(path: str) -> None:
    """Remove the rollback copy once the flush it guarded has completed."""
    for leftover in (rollback_path(path), rollback_path(path) + ".partial"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)


# -- the probe -----------------------------------------------------------------------------
# Run in a fresh interpreter that imports only netCDF4: opens the file, walks every group and
# reads each variable's first and last committed rows (which reach the chunk index and the
# newest chunks) and its attributes. Prints one JSON line.
_PROBE = r"""
import json, sys
import netCDF4
out = {"ok": False, "error": "", "uncommitted": {}, "vlen_committed": {}}
try:
    with netCDF4.Dataset(sys.argv[1], "r") as ds:
        groups = [("", ds)]
        while groups:
            prefix, group = groups.pop()
            groups.extend((prefix + name + "/", g) for name, g in group.groups.items())
            for name, var in group.variables.items():
                var.set_auto_maskandscale(False)
                attrs = {a: var.getncattr(a) for a in var.ncattrs()}
                if var.ndim == 0 or not var.dimensions or not var.get_dims()[0].isunlimited():
                    if var.size and var.size * var.dtype.itemsize < 1 << 24:
                        var[...]
                    continue
                rows = var.shape[0]
                committed = int(attrs.get("writebehind_length", rows))
                if rows > committed:
                    out["uncommitted"][prefix + name] = rows - committed
                vlen = var.dtype is str or isinstance(var.datatype, netCDF4.VLType)
                if vlen and "writebehind_length" in attrs:
                    out["vlen_committed"][prefix + name] = committed
                for row in {0, min(rows, committed) - 1}:
                    if row >= 0 and 0 not in var.shape:
                        var[row]
    out["ok"] = True
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


@dataclass
class _ProbeResult:
    ok: bool
    error: str
    uncommitted_rows: dict[str, int]
    vlen_committed: dict[str, int] = field(default_factory=dict)


def _probe(path: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> _ProbeResult:
    # The repair holds an exclusive flock, which HDF5's own locking would trip over.
    env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, path],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return _ProbeResult(False, f"netCDF4 hung reading it (> {timeout:g} s)", {})
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return _ProbeResult(False, f"netCDF4 crashed reading it: {tail[0]}", {})
    result = json.loads(lines[-1])
    return _ProbeResult(
        bool(result["ok"]),
        str(result["error"]),
        dict(result["uncommitted"]),
        dict(result["vlen_committed"]),
    )


# -- clearing variable-length rows past the committed length -------------------------------
# Rows of a variable-length variable (str, bytes, dict records) hold references into HDF5's
# global heap. Past the committed length -- inside the variable's extent or past it, in the
# last chunk -- a kill can leave references to heap objects that never reached the file.
# HDF5 frees the old object when it overwrites a row, so the next append there would fail
# ("HDF error") and the store could never continue the file. HDF5 fills the part of a chunk
# that a shrinking extent gives up with the fill value (null references) without freeing
# anything: so each such variable is grown to two chunks past its rows and shrunk back to its
# committed length. netCDF cannot do that: this runs in a fresh interpreter and calls
# H5Dset_extent through ctypes on the HDF5 library netCDF4 loaded.
_SHRINK = r"""
import ctypes, ctypes.util, glob, json, os, sys
import netCDF4

def hdf5():
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                name = os.path.basename(line.split()[-1])
                if name.startswith("libhdf5") and "_hl" not in name:
                    return ctypes.CDLL(line.split()[-1])
    except OSError:
        pass
    here = os.path.dirname(netCDF4.__file__)
    for pattern in ("../netcdf4.libs/libhdf5-*", "../netCDF4.libs/libhdf5-*", ".dylibs/libhdf5*"):
        for found in sorted(glob.glob(os.path.join(here, pattern))):
            if "_hl" not in os.path.basename(found):
                return ctypes.CDLL(found)
    return ctypes.CDLL(ctypes.util.find_library("hdf5"))

hid, size = ctypes.c_int64, ctypes.c_uint64
h5 = hdf5()
h5.H5open()
h5.H5Eset_auto2.argtypes = [hid, ctypes.c_void_p, ctypes.c_void_p]
h5.H5Eset_auto2(0, None, None)
h5.H5Fopen.restype = hid
h5.H5Fopen.argtypes = [ctypes.c_char_p, ctypes.c_uint, hid]
h5.H5Dopen2.restype = hid
h5.H5Dopen2.argtypes = [hid, ctypes.c_char_p, hid]
h5.H5Dget_space.restype = hid
h5.H5Dget_space.argtypes = [hid]
h5.H5Sget_simple_extent_dims.argtypes = [hid, ctypes.POINTER(size), ctypes.POINTER(size)]
h5.H5Dset_extent.argtypes = [hid, ctypes.POINTER(size)]
h5.H5Dget_create_plist.restype = hid
h5.H5Dget_create_plist.argtypes = [hid]
h5.H5Pget_chunk.argtypes = [hid, ctypes.c_int, ctypes.POINTER(size)]
h5.H5Pclose.argtypes = [hid]
for name in ("H5Sclose", "H5Dclose", "H5Fclose"):
    getattr(h5, name).argtypes = [hid]
file = h5.H5Fopen(sys.argv[1].encode(), 1, 0)  # H5F_ACC_RDWR, H5P_DEFAULT
if file < 0:
    sys.exit("H5Fopen failed")
failed = []
for path, committed in json.loads(sys.argv[2]).items():
    dataset = h5.H5Dopen2(file, ("/" + path).encode(), 0)
    if dataset < 0:
        failed.append(path)
        continue
    space = h5.H5Dget_space(dataset)
    dims, maxdims = (size * 32)(), (size * 32)()
    rank = h5.H5Sget_simple_extent_dims(space, dims, maxdims)
    h5.H5Sclose(space)
    plist = h5.H5Dget_create_plist(dataset)
    chunk = (size * 32)()
    chunked = h5.H5Pget_chunk(plist, 32, chunk)
    h5.H5Pclose(plist)
    rows = max(dims[0], committed)
    dims[0] = (rows // max(1, chunk[0]) + 2) * max(1, chunk[0])
    grown = rank >= 1 and chunked >= 1 and h5.H5Dset_extent(dataset, dims) >= 0
    dims[0] = committed
    if not grown or h5.H5Dset_extent(dataset, dims) < 0:
        failed.append(path)
    h5.H5Dclose(dataset)
if h5.H5Fclose(file) < 0:
    failed.append("(closing the file)")
try:  # what netCDF4 now reads of them: the last committed row of each
    with netCDF4.Dataset(sys.argv[1], "r") as ds:
        for path, committed in json.loads(sys.argv[2]).items():
            if committed:
                ds[path][committed - 1]
except Exception as exc:
    failed.append(f"reading the file afterwards: {type(exc).__name__}: {exc}")
print(json.dumps({"failed": failed}))
"""


def _cut_uncommitted_rows(path: str, committed: dict[str, int]) -> str:
    """Shrink the variable-length variables ``committed`` names to their committed length;
    '' on success, else what failed."""
    env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SHRINK, path, json.dumps(committed)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return "HDF5 hung shrinking it"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return f"shrinking it failed: {tail[0]}"
    failed = json.loads(lines[-1])["failed"]
    return f"failed: {', '.join(failed)}" if failed else ""
