"""Exceptions raised by writebehind.

The tree::

    Exception
     └── WriteBehindError                  base of every error that is writebehind's own
          ├── BackgroundWriteError         a queued operation failed on the writer thread;
          │                                the original exception is its ``__cause__``
          ├── StoreClosedError (+ValueError)   a call on a closed store
          ├── ForkedStoreError (+RuntimeError) a call, in a forked child, on a store the
          │                                    parent opened
          ├── DamagedDataError (+OSError)      entries whose bytes in the file are not
          │                                    the ones written (a checksum mismatch)
          ├── FormatError (+ValueError)        the file holds something that cannot be
          │                                    decoded (damaged or edited bookkeeping)
          ├── RecoveryError (+OSError)         a file left by a crash could not be
          │    │                               recovered (it was moved aside) or is in use
          │    ├── RecoveryNeededError         a file left by a crash, opened read-only,
          │    │                               cannot be read until it is recovered
          │    └── TruncatedFileError          the file is shorter than its own superblock
          │                                    says (a cut copy): nothing is changed
          ├── ReadOnlyError (+PermissionError) a write through a store opened with ``'r'``
          └── StoreInUseError (+OSError)       a Zarr store another writer holds (its
                                               lease), at open or at a commit

Errors of the caller's own making are raised as the built-in types users already catch:
``TypeError`` for a value that cannot be stored, ``ValueError`` for a shape, dtype or name
that does not fit, ``KeyError`` for a path that does not exist, ``AttributeError`` for a
group used as a variable (or the reverse), and pint's ``DimensionalityError`` for units.
"""

from __future__ import annotations

__all__ = [
    "BackgroundWriteError",
    "DamagedDataError",
    "ForkedStoreError",
    "FormatError",
    "ReadOnlyError",
    "RecoveryError",
    "RecoveryNeededError",
    "StoreClosedError",
    "StoreInUseError",
    "TruncatedFileError",
    "WriteBehindError",
]


class WriteBehindError(Exception):
    """Base class of writebehind's own exceptions."""


class BackgroundWriteError(WriteBehindError):
    """A queued operation failed on the writer thread.

    The store stops applying operations once one has failed: this error is raised by every
    later call (and by ``flush`` and ``close``), never dropped. The original exception is
    ``__cause__``; ``path`` and ``operation`` name what failed and ``unwritten`` counts the
    operations that were pending behind it and were not applied.
    """

    def __init__(self, message: str, *, path: str = "", operation: str = "", unwritten: int = 0):
        super().__init__(message)
        self.path = path
        self.operation = operation
        self.unwritten = unwritten


class StoreClosedError(WriteBehindError, ValueError):
    """The store (or its driver) was closed; open the file again to use it."""


class ForkedStoreError(WriteBehindError, RuntimeError):
    """A call, in a process made by ``fork()``, on a store that its parent opened.

    The store's writer thread, which owns the file, stays in the parent: the child has
    none, and must not write the file the parent is writing. Open stores after forking (in
    each process that uses one, on a file of its own), or start processes with the
    ``'spawn'`` or ``'forkserver'`` method. The message names the file and both processes.
    """


class ReadOnlyError(WriteBehindError, PermissionError):
    """A write, append or metadata change through a store opened read-only (``'r'``)."""


class FormatError(WriteBehindError, ValueError):
    """What the file holds at a path cannot be decoded: its bookkeeping is damaged or edited.

    The message names the path. Nothing from the file is ever executed to decode it.
    """


class RecoveryError(WriteBehindError, OSError):
    """A file left by a crash could not be recovered, or is in use by another process.

    An unrecoverable file is moved aside, unchanged, and the message says where;
    ``report`` (a :class:`~writebehind.drivers.netcdf.RecoveryReport`, or None) tells the rest.
    """

    def __init__(self, message: str, *, report: object = None):
        super().__init__(message)
        self.report = report


class RecoveryNeededError(RecoveryError):
    """A file a killed writer left cannot be read as it is, and it was opened read-only.

    Reading never writes, so nothing was changed: run ``writebehind recover FILE``, or open
    the file to append (``"a"``), which recovers it first.
    """


class TruncatedFileError(RecoveryError):
    """The file ends before the end its own superblock records: it was cut short (an
    interrupted copy or download, a full disk), not left by a crash. Nothing is changed;
    ``size`` is where it ends and ``expected_size`` where it should."""

    def __init__(self, message: str, *, size: int, expected_size: int, report: object = None):
        super().__init__(message, report=report)
        self.size = size
        self.expected_size = expected_size


class DamagedDataError(WriteBehindError, OSError):
    """Entries whose bytes in the file are not the ones written: their chunk fails its
    checksum (a damaged disk or copy, a file cut short and extended). Never returned as
    values; ``path`` names the variable and ``entries`` the ``(start, stop)`` ranges hit.
    """

    def __init__(self, message: str, *, path: str, entries: list[tuple[int, int]]):
        super().__init__(message)
        self.path = path
        self.entries = entries


class StoreInUseError(WriteBehindError, OSError):
    """A Zarr store is written by another writer: it holds the store's lease (one writer
    per store). Raised at open, or at a commit once another writer took the lease over;
    the message names the holder. See ``docs/scale-out.md``, "One writer per store"."""
