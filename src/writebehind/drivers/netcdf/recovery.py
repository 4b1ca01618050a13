"""Crash recovery of a NetCDF-4 (HDF5) file that a killed process left behind.

What a crash leaves, and what is done about it (docs/durability.md tells the whole story):

- HDF5 marks the superblock "open for writing" (file consistency flags) when it opens a file
  for writing and clears the mark when it closes it; its end-of-allocation address (EOA) is
  written last in every flush. A process killed while appending leaves the mark set and,
  often, the file longer than the EOA; killed in the middle of a flush, it can leave object
  headers that point past the EOA, and then HDF5 refuses to read the file ("addr overflow").
- :func:`recover` repairs that as ``h5clear -s --increment=0`` does: it rewrites the
  superblock with the marks cleared and the EOA raised to the file's size, and a fresh
  Jenkins lookup3 checksum (``superblock``). The original superblock
  bytes are kept (in the report and the log, and restored if the repair does not help).
- Rows past a variable's committed length (the ``writebehind_length`` attribute written by
  each flush) are not trusted: the store's catalog ignores them and later appends overwrite
  them. The report counts them.
- Rows of variable-length variables past the committed length are cleared (they can point
  to heap objects the kill kept from the file, which would make the next append fail).
- A flush that changes the file's structure (a new group, variable or attribute) can leave
  it unreadable; the driver keeps the pre-images of the file's metadata from before such a
  change until the next sync completes (``metajournal``), and recovery writes them back;
  where that journal would be too large, a whole *rollback copy*, which recovery puts back
  if the file is unreadable.
- Whether a file is readable is decided by opening it with netCDF4 in a *subprocess* with a
  timeout, because a damaged HDF5 file can hang or crash the library (``probe``).
- A file that stays unreadable is moved aside under a new name (never overwritten, never
  deleted) and :class:`~writebehind.RecoveryError` says where it went.

A file in use by another process (HDF5 holds a ``flock`` on every file it has open) is never
touched. A cleanly closed file costs one read of its first bytes and a ``stat``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import struct
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..._errors import RecoveryError, RecoveryNeededError, TruncatedFileError
from . import metajournal, recoverymark
from .journal import journal_path, load_journal, nodes_differ, write_back
from .probe import ProbeResult, clear_vlen_rows, probe, reseal_chunks
from .sidefiles import (
    FILE_ID_ATTR,
    NEW_SUFFIX,
    ROLLBACK_SUFFIX,
    FileIdentity,
    create_exclusive,
    fsync_directory,
    log_unproven,
    new_file_id,
    remove_side_files,
)
from .superblock import Superblock, lookup3, read_superblock

try:
    import fcntl
except ImportError:  # Windows: no flock; a file in use elsewhere cannot be detected there
    fcntl = None  # type: ignore[assignment]

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
    index_nodes_restored: int = 0  # chunk-index nodes put back from the undo journal
    metadata_restored: int = 0  # metadata ranges put back from the metadata journal
    resealed_chunks: dict[str, int] = field(default_factory=dict)  # torn by a killed flush
    reseal_error: str = ""  # why chunks could not be resealed
    # an earlier recovery of it was interrupted (its mark was found): finished now, or read
    # as it is by a read-only open
    recovery_interrupted: bool = False

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
            "index_nodes_restored": self.index_nodes_restored,
            "metadata_restored": self.metadata_restored,
            "resealed_chunks": dict(self.resealed_chunks),
            "reseal_error": self.reseal_error,
            "recovery_interrupted": self.recovery_interrupted,
        }

    def describe(self) -> str:
        """A few lines for people (the log and ``writebehind recover``)."""
        if self.superblock_version is None:
            if self.readable_after is False:
                return (
                    f"{self.path}: not an HDF5 file, and netCDF4 cannot read it: {self.probe_error}"
                )
            reads = " (netCDF4 reads it: a netCDF-3 file)" if self.readable_after else ""
            return f"{self.path}: not an HDF5 file{reads}, nothing to recover"
        if self.clean:
            lines = [f"{self.path}: closed cleanly"]
        elif self.recovery_interrupted:
            lines = [f"{self.path}: its recovery after a crash was interrupted (killed?)"]
        else:
            lines = [f"{self.path}: left open by a process that did not close it (a crash?)"]
        if self.probe_error:
            lines.append(f"  netCDF4 could not read it: {self.probe_error}")
        if self.metadata_restored:
            lines.append(
                "  a flush changing its structure was interrupted: its metadata was restored "
                f"as the last completed flush left it ({self.metadata_restored} ranges)"
            )
        if self.index_nodes_restored:
            lines.append(
                f"  {self.index_nodes_restored} chunk-index node(s) an interrupted flush may "
                "have rewritten were restored from its undo journal"
            )
        if self.superblock_repaired:
            lines.append(
                f"  superblock v{self.superblock_version} repaired: end of allocation "
                f"{self.old_eof} -> {self.new_eof} (file size {self.file_size}), open-for-"
                f"writing flags cleared; original bytes {self.original_superblock.hex()}"
            )
        for path, chunks in sorted(self.resealed_chunks.items()):
            lines.append(
                f"  {path}: {chunks} chunk(s) an interrupted flush was rewriting resealed "
                "(their checksum written anew; the flushed rows in them are unchanged)"
            )
        if self.reseal_error:
            lines.append(f"  could not reseal chunks past the last flush ({self.reseal_error})")
        for path, rows in sorted(self.uncommitted_rows.items()):
            lines.append(f"  {path}: {rows} row(s) past the last flush ignored")
        for path, rows in sorted(self.cut_rows.items()):
            lines.append(f"  {path}: {rows} variable-length row(s) past the last flush removed")
        if self.cut_error:
            lines.append(
                "  could not remove variable-length rows past the last flush "
                f"({self.cut_error}): appending to them will fail"
            )
        outcome = self._outcome()
        if outcome:
            lines.append(f"  {outcome}")
        if len(lines) == 1 and self.clean:
            lines[0] += ", nothing to recover"
        return "\n".join(lines)

    def _outcome(self) -> str:
        """The state the file is left in, when the lines before have not said it ("")."""
        if self.rolled_back:
            return (
                "a flush that was changing its structure had left it unreadable: rolled back "
                f"to the copy taken before that flush; the broken file is {self.moved_to}"
            )
        if self.moved_to:
            return f"unrecoverable: moved aside to {self.moved_to}"
        if self.readable_after and not self.clean:
            return "recovered: every flushed entry is readable"
        if self.readable_after is False and not self.probe_error:
            return "netCDF4 cannot read it"
        return ""


# -- recovery ------------------------------------------------------------------------------
#: How far short of its end of allocation a file a killed writer left may end: HDF5 reserves
#: space in blocks (metadata and small-data aggregators, 2 KiB each by default) that it may
#: not have written when it was killed. A file shorter than that was cut, not killed.
ALLOCATION_SLACK = 1 << 20


def needs_recovery(path: str) -> bool:
    """Whether the HDF5 file at ``path`` was left open for writing, or its recovery was
    interrupted (cheap: no HDF5 call)."""
    try:
        superblock = read_superblock(path)
    except RecoveryError:
        return True
    if superblock is None:
        return False
    return superblock.flags != 0 or recoverymark.exists(path)


def recover(path: str, *, force: bool = False, write: bool = True) -> RecoveryReport:
    """Make the file a killed writer left at ``path`` readable again, if it needs it.

    Recovery acts only on proof. A file whose superblock says it was closed cleanly is never
    changed (only its superblock is read, unless ``force``, which also probes it); one that
    ends before its own superblock says it should was cut short, and is refused. A file
    left open for writing by a process that no longer runs is probed with netCDF4 in a
    subprocess and, with ``write``, repaired: its superblock rewritten (flags cleared, end
    of allocation raised to the file's size), the chunk-index nodes of its undo journal put
    back, or the copy taken before an interrupted structural flush put back, each only when
    the side file proves to belong to this very file (``sidefiles``).

    Without ``write`` (a read-only open) nothing is written, created, renamed or removed:
    a crashed file that netCDF4 reads as it is, with no sign that a flush was interrupted
    halfway, is reported and read; any other raises :class:`RecoveryNeededError`.

    Returns
    -------
    RecoveryReport
        Also logged (WARNING when something was recovered) on the ``writebehind`` logger.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    TruncatedFileError
        The file ends before its end of allocation: a cut copy. Nothing was changed.
    RecoveryNeededError
        Without ``write``: the file must be recovered before it can be read.
    RecoveryError
        The file is still unreadable: with ``write`` it was moved aside (``moved_to``) and
        the message says where; or it is in use by another process, or its superblock is
        damaged (which a kill cannot do), and it was not touched.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)  # FileNotFoundError as promised
    try:
        superblock = read_superblock(path)
    except RecoveryError as exc:
        # A flush writes the superblock in one small write, so a kill cannot leave a bad
        # checksum: this damage has another cause. Roll back if a copy taken before an
        # interrupted flush proves to be this file's; otherwise leave the file as it is.
        meta = metajournal.load(path) if write else None
        if write and (meta is not None or os.path.exists(rollback_path(path))):
            report = RecoveryReport(path, clean=False, file_size=size, probe_error=str(exc))
            with _exclusive(path) as fd:
                if fd is None:
                    raise _in_use(path) from exc
                if meta is not None and meta[0].proves(fd, None):
                    # the superblock's pre-image is in the journal
                    restored = metajournal.write_back(path, fd, meta[1])
                    os.unlink(metajournal.journal_path(path))
                    report = recover(path, force=force)
                    report.metadata_restored = restored
                    return report
                if _rollback_identity(path, fd, None):
                    return _roll_back(path, report, str(exc))
        raise
    if superblock is None:  # not HDF5 (netCDF-3, or not NetCDF): nothing a crash leaves
        report = RecoveryReport(path, clean=True, file_size=size)
        if force:
            result = probe(path)
            report.readable_before = report.readable_after = result.ok
            report.probe_error = "" if result.ok else result.error
        return report
    clean = superblock.flags == 0
    report = RecoveryReport(
        path,
        clean=clean,
        file_size=size,
        superblock_version=superblock.version,
        old_eof=superblock.eof_in_file,
        new_eof=superblock.eof_in_file,
    )
    # A kill inside HDF5's close in recovery's last steps can leave the flag clear before
    # the file has its final length: with a mark, the slack of a killed writer applies.
    marked = clean and recoverymark.exists(path)
    _refuse_if_cut_short(path, superblock, size, report, killed=not clean or marked)
    if clean and not marked:
        return _clean(path, report, force, write)
    if not write:
        return _check_readable_as_is(path, superblock, size, report)
    with _exclusive(path) as fd:
        if fd is None:
            raise _in_use(path)
        if clean:  # a recovery that a kill interrupted after it cleared the flag
            if not recoverymark.proven(path, fd, lambda: probe(path).file_id):
                _refuse_if_cut_short(path, superblock, size, report, killed=False)
                return _clean(path, report, force, write)
            report.clean = False
            report.recovery_interrupted = True
        return _recover_locked(path, fd, superblock, size, report, force)


def _refuse_if_cut_short(
    path: str, superblock: Superblock, size: int, report: RecoveryReport, killed: bool
) -> None:
    """Raise TruncatedFileError if the file ends before its end of allocation, by more than
    a killed writer leaves unwritten (``killed``) or at all."""
    short = superblock.eof_in_file - size
    if short > (ALLOCATION_SLACK if killed else 0):
        raise TruncatedFileError(
            f"{path!r} is truncated: it ends at byte {size}, but its HDF5 superblock says it "
            f"ends at byte {superblock.eof_in_file} ({short} bytes are missing). It was "
            f"{'left open by a writer' if killed else 'closed cleanly'} and then cut short "
            "(an interrupted copy or download, a full disk?). Nothing was changed: copy it "
            "again from its source.",
            size=size,
            expected_size=superblock.eof_in_file,
            report=report,
        )


def _clean(path: str, report: RecoveryReport, force: bool, write: bool) -> RecoveryReport:
    """A file closed cleanly: nothing to recover."""
    if write:  # a clean close removes every side file: these are stale
        remove_side_files(path, "left beside a file that was closed cleanly")
    if force:
        result = probe(path)
        report.readable_before = report.readable_after = result.ok
        report.probe_error = "" if result.ok else result.error
    return report


def _recover_locked(
    path: str, fd: int, superblock: Superblock, size: int, report: RecoveryReport, force: bool
) -> RecoveryReport:
    """Recovery of a file left open for writing, under its exclusive lock.

    Every step can be run again on what a kill in any step left (the mark says to): the
    journals are written back and then removed, the superblock rewritten, the reseal and
    the cut redo only what is still to do.
    """
    previous = recoverymark.load(path)  # a kill in a step that left the flag set
    if previous is not None and previous.proves(fd, None):
        report.recovery_interrupted = True
    recoverymark.begin(path, fd)  # on disk before a byte of the file changes
    if force:
        before = probe(path)
        report.readable_before = before.ok
        report.probe_error = before.error
    # A structural flush that was interrupted: put its metadata back first, when the inode
    # proves the journal is this file's (the file's id may not be readable before).
    meta = metajournal.load(path)
    if meta is not None and meta[0].proves(fd, None):
        superblock = _restore_metadata(path, fd, meta[1], report) or superblock
        meta = None
    # Then the superblock: netCDF4 reads the file's id only once its end of allocation
    # covers what the file holds, and the id proves which side files are the file's.
    _repair_superblock(fd, superblock, os.fstat(fd).st_size, report)
    after = probe(path)
    recoverymark.record_file_id(path, fd, after.file_id)
    changed = bool(report.metadata_restored)
    if meta is not None and meta[0].proves(fd, after.file_id):
        superblock = _restore_metadata(path, fd, meta[1], report) or superblock
        _repair_superblock(fd, superblock, os.fstat(fd).st_size, report)
        changed = True
    elif meta is not None:
        logger.warning(
            "writebehind: %s: ignored %s: it does not belong to this file",
            path,
            metajournal.journal_path(path),
        )
    journal = load_journal(path)
    if journal is not None and journal[0].proves(fd, after.file_id):
        records = journal[1]
        if nodes_differ(fd, records):
            report.index_nodes_restored = write_back(path, fd, records)
            changed = True
    elif os.path.exists(journal_path(path)):
        logger.warning(
            "writebehind: %s: ignored %s: %s",
            path,
            journal_path(path),
            "it does not belong to this file" if journal else "it is incomplete or voided",
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal_path(path))
        # the steps below change the file: a journal back after a power loss would undo them
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    # Only a file with checksums needs (and pays for) the reseal.
    if after.checksummed:
        report.resealed_chunks, report.reseal_error = reseal_chunks(path)
    if changed or report.resealed_chunks:
        after = probe(path)
    report.readable_after = after.ok
    report.uncommitted_rows = after.uncommitted_rows
    report.probe_error = report.probe_error or after.error
    if after.ok and after.vlen_committed:
        _cut_vlen_rows(path, after, report)
    has_rollback = os.path.exists(rollback_path(path))
    if not after.ok:
        _restore(fd, superblock, size)
        report.superblock_repaired = False
        if has_rollback and _rollback_identity(path, fd, after.file_id):
            return _roll_back(path, report, after.error)
        _give_up(path, report, after.error)
    if has_rollback:  # the flush it guarded did not break the file: not needed
        drop_rollback_copy(path)
    remove_side_files(path, "recovery no longer needs them", keep=recoverymark.mark_path(path))
    recoverymark.finish(path)  # last: every step is done
    logger.warning("writebehind: %s", report.describe())
    return report


def _restore_metadata(
    path: str, fd: int, records: list[tuple[int, bytes]], report: RecoveryReport
) -> Superblock | None:
    """Write the metadata journal's pre-images back; the superblock they hold (the last
    completed flush's, which the caller then repairs)."""
    report.metadata_restored = metajournal.write_back(path, fd, records)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(metajournal.journal_path(path))
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    superblock = read_superblock(path)
    if superblock is not None:
        report.old_eof = superblock.eof_in_file
    return superblock


def _check_readable_as_is(
    path: str, superblock: Superblock, size: int, report: RecoveryReport
) -> RecoveryReport:
    """A read-only open of a file a killed writer left: read it as it is, or refuse.

    It reads as it is when the last flush completed: the superblock's end of allocation
    within the file, no copy of an interrupted structural flush, no chunk-index node
    other than its journal's, and netCDF4 reads it (in a subprocess). Writes nothing.

    A file whose flag is clear gets here only with the mark of an interrupted recovery
    (``recoverymark``), and is read the same way unless its inode disproves the mark (which
    the next open that may write removes).
    """
    with open(path, "rb") as file:
        fd = file.fileno()
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _in_use(path) from None
        if superblock.flags == 0:
            mark = recoverymark.load(path)
            if mark is None or mark.disproves(fd):  # closed cleanly; the mark is not its own
                _refuse_if_cut_short(path, superblock, size, report, killed=False)
                return report
            report.clean = False
            report.recovery_interrupted = True
        reasons = []
        if superblock.eof_in_file > size:
            reasons.append(f"it ends at byte {size}, before its end of allocation")
        rollback = _rollback_identity_of(path)
        meta = metajournal.load(path)
        if (rollback is not None and not rollback.disproves(fd)) or (
            meta is not None and not meta[0].disproves(fd)
        ):
            reasons.append("a flush that was changing its structure was interrupted")
        journal = load_journal(path)
        if journal is not None and not journal[0].disproves(fd) and nodes_differ(fd, journal[1]):
            # Whether the journal is this file's cannot be proven without reading the
            # file's id; either way, its indexes are not as the last flush left them.
            reasons.append("a flush was interrupted while it rewrote a chunk index")
        result = probe(path) if not reasons else None
    if result is not None and not result.ok:
        reasons.append(f"netCDF4 cannot read it as it is ({result.error})")
    if reasons:
        left = (
            "its recovery after a crash was interrupted (killed?)"
            if report.recovery_interrupted
            else "was left open by a writer that did not close it (a crash?)"
        )
        raise RecoveryNeededError(
            f"{path!r} {left} and "
            f"cannot be read as it is: {'; '.join(reasons)}. It was opened read-only, so "
            f"nothing was changed: run `writebehind recover {path}` or open it to append "
            "('a'), which recovers it first.",
            report=report,
        )
    assert result is not None
    report.readable_before = report.readable_after = True
    report.uncommitted_rows = result.uncommitted_rows
    logger.warning(
        "writebehind: %s: %s; read as it is, not repaired (opened read-only): every flushed "
        "entry is readable",
        path,
        "its recovery after a crash was interrupted (killed?)"
        if report.recovery_interrupted
        else "left open by a writer that did not close it (a crash?)",
    )
    return report


def _repair_superblock(fd: int, superblock: Superblock, size: int, report: RecoveryReport) -> None:
    new_eof = max(size, superblock.eof_in_file)
    if size < new_eof:
        os.ftruncate(fd, new_eof)  # HDF5 refuses a file shorter than its EOA
    os.pwrite(fd, superblock.with_eof(new_eof), superblock.offset)
    os.fsync(fd)
    report.superblock_repaired = True
    report.original_superblock = report.original_superblock or superblock.raw
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


def _cut_vlen_rows(path: str, probed: ProbeResult, report: RecoveryReport) -> None:
    """Clear variable-length rows past the committed length (``probe.clear_vlen_rows`` says why).

    Not guarded by a copy (a copy of a large file at every recovery could fill the disk):
    HDF5 rewrites the last chunk of each such variable in place, its rows below the
    committed length with the same bytes, and its object header; it allocates nothing.
    """
    problem = clear_vlen_rows(path, probed.vlen_committed)
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
    copy = rollback_path(path)
    os.truncate(copy, os.path.getsize(copy) - _ROLLBACK_TRAILER)  # the file's bytes only
    os.replace(copy, path)
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
        f"{path!r} is open for writing elsewhere (a running simulation, or another store in "
        "this process): HDF5 locks a file while it is written, and writebehind does not "
        "touch a file in use. Read it through the store that writes it, or open it once "
        "that store is closed (the guide: 'Reading a file while it is written')."
    )


def _give_up(path: str, report: RecoveryReport, error: str) -> NoReturn:
    """Move the unreadable file aside and raise RecoveryError saying where."""
    aside = _aside_name(path)
    os.rename(path, aside)  # same directory, so never a copy: the bytes stay as they were
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    recoverymark.finish(path)  # the mark was the moved file's
    report.moved_to = aside
    logger.error("writebehind: %s", report.describe())
    raise RecoveryError(
        f"{path!r} was left damaged by a crash and could not be recovered ({error}); it was "
        f"moved aside, unchanged, to {aside!r}. Opening {path!r} again starts a new file.",
        report=report,
    )


class _exclusive:
    """An exclusive ``flock`` on the file for the length of the repair; yields None if the
    file is locked (HDF5 holds a ``flock`` on every file it has open)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self) -> int | None:
        try:
            self.fd = os.open(self.path, os.O_RDWR)
        except PermissionError as exc:
            raise RecoveryError(
                f"{self.path!r} was left open by a process that did not close it and must be "
                f"recovered, which writes to it, but it cannot be opened for writing ({exc}); "
                "run `writebehind recover` on it as a user who may write it"
            ) from exc
        if fcntl is None:
            return self.fd
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
def create_atomically(path: str) -> Any:
    """Create a NetCDF-4 file at ``path`` that is valid from the moment it has that name.

    netCDF4 creates it under a temporary name, syncs it and renames it over ``path``: a kill
    during the creation leaves at most a stray ``path + NEW_SUFFIX``, never a half-written
    file under the user's name (which recovery could only move aside), and an existing file
    at ``path`` stays intact until the rename. Every side file left for ``path`` is removed
    first (a new file must not inherit a killed run's journal), the temporary file is
    created exclusively (never through a link planted at its name), and the new file gets
    a random id (the root attribute ``writebehind_file_id``) that its side files record.
    ``path`` must not be a link (the driver resolves it). Returns the open
    ``netCDF4.Dataset``.

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
    remove_side_files(path, "a new file is created")
    partial = path + NEW_SUFFIX
    # clobber=False: HDF5 creates it with O_EXCL, which fails on a link planted since
    dataset = netCDF4.Dataset(partial, "w", clobber=False, format="NETCDF4")
    try:
        dataset.setncattr(FILE_ID_ATTR, new_file_id())
        dataset.sync()
        os.replace(partial, path)
    except BaseException:
        dataset.close()
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return dataset


# -- the rollback copy ---------------------------------------------------------------------
#: The copy ends with the identity of the file it was taken from, the copy's own length and
#: this marker; a copy without it (incomplete, or of an older version) is never applied.
_ROLLBACK_MAGIC = b"WBROLL1\n"
_ROLLBACK_TRAILER = FileIdentity.SIZE + 8 + len(_ROLLBACK_MAGIC)


def rollback_path(path: str) -> str:
    """Where the rollback copy of ``path`` is kept during a flush that changes its structure."""
    return path + ROLLBACK_SUFFIX


def keep_rollback_copy(path: str, durable: bool, identity: FileIdentity) -> str:
    """Copy the file as it is on disk to its rollback copy; returns the copy's path.

    Called before a flush that creates groups or variables or changes attributes: HDF5
    rewrites the parent's object header in place and writes the new objects after it, so a
    kill in between leaves a link to an object that is not there and the whole file
    unreadable. The copy ends with the ``identity`` of the file (see ``sidefiles``); it is
    written under a temporary name, created exclusively, and renamed, so it exists only
    when complete; with ``durable`` it is fsynced (with its directory) before the flush
    starts changing the file.
    """
    target = rollback_path(path)
    partial = target + ".partial"
    fd = create_exclusive(partial)
    with open(path, "rb") as source, open(fd, "wb") as copy:
        length = remaining = os.fstat(source.fileno()).st_size
        offset = 0
        if not hasattr(os, "copy_file_range"):  # not Linux
            shutil.copyfileobj(source, copy, 1 << 20)
            remaining = 0
        while remaining > 0:  # in the kernel; a reflink where the file system can
            done = os.copy_file_range(source.fileno(), copy.fileno(), remaining, offset, offset)
            if done == 0:
                break
            offset += done
            remaining -= done
        copy.seek(length)
        copy.write(identity.pack() + struct.pack("<Q", length) + _ROLLBACK_MAGIC)
        copy.flush()
        if durable:
            os.fsync(copy.fileno())
    os.replace(partial, target)
    if durable:
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    return target


def _rollback_identity_of(path: str) -> FileIdentity | None:
    """The identity the rollback copy of ``path`` records; None if there is no complete one."""
    try:
        with open(rollback_path(path), "rb") as copy:
            size = os.fstat(copy.fileno()).st_size
            if size < _ROLLBACK_TRAILER:
                return None
            copy.seek(size - _ROLLBACK_TRAILER)
            trailer = copy.read()
    except FileNotFoundError:
        return None
    (length,) = struct.unpack_from("<Q", trailer, FileIdentity.SIZE)
    if not trailer.endswith(_ROLLBACK_MAGIC) or length != size - _ROLLBACK_TRAILER:
        return None
    return FileIdentity.unpack(trailer)


def _rollback_identity(path: str, fd: int, file_id: str | None) -> bool:
    """Whether the rollback copy of ``path`` proves to be a copy of the file open as ``fd``;
    one that does not is removed (and logged)."""
    identity = _rollback_identity_of(path)
    if identity is not None and identity.proves(fd, file_id):
        return True
    log_unproven(path, rollback_path(path), identity, "it is a copy of another file")
    drop_rollback_copy(path)
    return False


def drop_rollback_copy(path: str) -> None:
    """Remove the rollback copy once the flush it guarded has completed."""
    for leftover in (rollback_path(path), rollback_path(path) + ".partial"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
