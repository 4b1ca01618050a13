"""A forked child writes nothing to the files its parent's netCDF library has open.

A child made by ``fork()`` shares its parent's open file descriptors, and has a copy of the
library's state: which files are open, and the metadata HDF5 keeps in memory until it
flushes. Closing such a file in the child writes that metadata, stale by then, into the
parent's file; and HDF5 closes every open file at the exit of the process (a C ``atexit``
handler), as netCDF4 closes a dataset when its object is collected, so every child that
exits the normal way would do it. (A child that ends with ``os._exit``, as
``multiprocessing``'s do, runs neither.)

So right after the fork, the child's descriptors of those files are pointed at
``/dev/null``: what the child's library writes to them goes nowhere, and the parent's
descriptors, and its HDF5 file lock, are untouched. Then, if no thread was inside the
library at the fork, the child's copies of the datasets are closed (into ``/dev/null``): the
child's library forgets the files, and the child can open one of them itself once the
parent has closed it (before that, writebehind's open refuses it: the parent's HDF5 lock).
Otherwise the library may be half way through an update and is left alone: the copies are
closed at the child's exit, as harmlessly, and until then the child's library would take
such a file, opened again, for its stale copy (whose writes go nowhere), so opening one is
refused (``check_not_inherited``).

A file is recognised by its device and inode, recorded when it was opened: any descriptor
the child inherited on it is redirected, one of the user's own included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import weakref
from typing import Any

__all__ = ["OpenFiles", "redirect_to_null"]


class OpenFiles:
    """The datasets a library has open in this process, and the identity of their files."""

    def __init__(self) -> None:
        # id of the dataset -> (the dataset, (st_dev, st_ino) of its file)
        self._files: dict[int, tuple[weakref.ref[Any], tuple[int, int]]] = {}
        # The parent's files whose copies a forked child could not close.
        self._inherited: set[tuple[int, int]] = set()

    def add(self, dataset: Any, path: str) -> None:
        """Record that ``dataset`` has the file at ``path`` open."""
        key = id(dataset)
        with contextlib.suppress(OSError):
            status = os.stat(path)
            ref = weakref.ref(dataset, lambda _: self._files.pop(key, None))
            self._files[key] = (ref, (status.st_dev, status.st_ino))

    def discard(self, dataset: Any) -> None:
        """``dataset`` closed its file."""
        self._files.pop(id(dataset), None)

    def check_not_inherited(self, path: str) -> None:
        """Raise OSError if the file at ``path`` is one the library still holds a copy of
        from before a fork (see the module's docstring)."""
        if not self._inherited:
            return
        try:
            status = os.stat(path)
        except OSError:
            return
        if (status.st_dev, status.st_ino) in self._inherited:
            raise OSError(
                errno.EBUSY,
                f"cannot open {path!r} in this process: it is a fork of a process that had "
                "the file open while a store was writing, and netCDF here still holds that "
                "process's copy of it. Open it in a process that did not fork from one "
                "using it",
            )

    def after_fork_in_child(self, quiet: bool) -> None:
        """In a forked child: make sure no file of the parent is written from here.

        ``quiet``: no thread was inside the library at the fork, so the child may call it.
        """
        files = list(self._files.values())
        self._files.clear()  # none of them is this process's to write any more
        if not files:
            return
        identities = {identity for _, identity in files}
        redirect_to_null(identities)
        if not quiet:
            self._inherited |= identities
            return
        for ref, _ in files:
            dataset = ref()
            if dataset is not None and dataset.isopen():
                with contextlib.suppress(Exception):  # nothing it writes reaches the file
                    dataset.close()


def redirect_to_null(identities: set[tuple[int, int]]) -> None:
    """Point every descriptor of this process on one of the files ``identities`` (device,
    inode) at ``/dev/null``."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    try:
        for fd in _descriptors():
            if fd == null:
                continue
            try:
                status = os.fstat(fd)
            except OSError:  # closed meanwhile (the directory listing's own)
                continue
            if (status.st_dev, status.st_ino) in identities:
                os.dup2(null, fd, inheritable=os.get_inheritable(fd))
    finally:
        os.close(null)


def _descriptors() -> list[int]:
    """The open file descriptors of this process."""
    for directory in ("/proc/self/fd", "/dev/fd"):  # Linux; macOS and the BSDs
        try:
            return [int(name) for name in os.listdir(directory)]
        except (OSError, ValueError):
            continue
    try:
        limit = os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        limit = 1024
    return list(range(max(0, min(limit, 1 << 16))))
