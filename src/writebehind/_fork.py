"""What ``fork()`` does to the stores a process has open.

A forked child is a copy of its parent with one thread, the one that called ``fork``. Every
store's writer thread stays in the parent: in the child, nothing would ever apply what the
store's copy enqueues, and anything that waits for a writer (a flush, a read, or the close
that the exit hook runs for a store never closed) would wait forever. A lock that a thread
of the parent held at the fork stays held in the child, by nobody. The hooks here, which
``os.fork`` runs (and with it ``multiprocessing``'s ``'fork'`` start method), make the
child's copy of each store refuse every call at once instead:

- before the fork, the garbage collector is paused (a store's finalizer run on the forking
  thread in the middle of the fork would wait for a writer), and the fork waits, for up to
  ``FORK_WAIT_SECONDS``, for the writers to leave their library (see ``register_library``)
  and holds its lock across the fork: the child's copy of the library is then not in the
  middle of an update, and its lock is free for stores the child opens itself;
- in the parent, the lock is released and the collector resumed: the stores go on;
- in the child, every engine is marked forked (see ``Engine._forked_in_child``): each call
  raises :class:`~writebehind.ForkedStoreError` before it takes a lock or waits, and the
  finalizer that would close the store at exit does nothing. The files are the parent's:
  the netCDF driver's hook makes sure the child never writes them, not even in the close
  of every open file that HDF5 runs at exit (see ``drivers/netcdf/descriptors.py``).

Nothing here is on the append path: the mark folds into the one check of ``_unusable`` that
the append already makes.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["FORK_WAIT_SECONDS", "register", "register_library"]


class Engine(Protocol):
    """What a fork needs of an engine (``_engine.Engine``, which imports this module)."""

    def _forked_in_child(self) -> None: ...


#: How long a fork waits for the writer threads to leave their library (see above). A
#: writer holds it for one operation at a time, milliseconds; a fork that runs out of time
#: goes on, and the child gets the library as the writer left it.
FORK_WAIT_SECONDS = 2.0

#: Every engine alive in this process, by id (a plain dict: copying its values is atomic,
#: where iterating a WeakSet while another thread adds to it can fail).
_engines: dict[int, weakref.ref[Engine]] = {}
#: The libraries whose lock a fork holds: (lock, what the child does before it is freed).
_libraries: list[tuple[Any, Callable[[bool], None]]] = []
#: What each forking thread's before-hook hands its after-hooks: the locks it holds.
_fork = threading.local()


def register(engine: Engine) -> None:
    """Have ``engine`` marked forked in children forked while it is alive."""
    key = id(engine)
    _engines[key] = weakref.ref(engine, lambda _: _engines.pop(key, None))


def register_library(lock: Any, after_fork_in_child: Callable[[bool], None]) -> None:
    """Hold a library's ``lock`` across every fork, once no thread is inside the library.

    In the child, ``after_fork_in_child(quiet)`` runs before the lock is freed there, with no
    thread but the caller's: ``quiet`` says whether the lock was held across the fork (no
    thread was inside the library, so the child may call into it), or the wait for it ran
    out (``FORK_WAIT_SECONDS``).
    """
    _libraries.append((lock, after_fork_in_child))


def _live_engines() -> list[Engine]:
    engines = (ref() for ref in list(_engines.values()))
    return [engine for engine in engines if engine is not None]


def _before_fork() -> None:
    _fork.held = []  # for the after-hooks, should this one fail
    _fork.collecting = gc.isenabled()
    gc.disable()
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    for lock, _ in _libraries:
        if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            _fork.held.append(lock)


def _after_fork_in_parent() -> None:
    for lock in reversed(_fork.held):
        lock.release()
    _fork.held = []
    if _fork.collecting:
        gc.enable()


def _after_fork_in_child() -> None:
    for engine in _live_engines():
        engine._forked_in_child()
    held = _fork.held
    for lock, after_fork_in_child in _libraries:
        quiet = any(lock is mine for mine in held)
        try:
            after_fork_in_child(quiet)
        finally:
            if quiet:
                lock.release()
            else:  # held, at the fork, by a thread this process does not have
                _reinit(lock)
    _fork.held = []
    if _fork.collecting:
        gc.enable()


def _reinit(lock: Any) -> None:
    """Make a lock held by a thread that is not in this process free again."""
    reinit = getattr(lock, "_at_fork_reinit", None)  # threading's locks (what CPython uses)
    if reinit is not None:
        reinit()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
