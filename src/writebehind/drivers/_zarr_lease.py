"""One writer per Zarr store: a lease object in the store, renewed while its writer lives.

Two writers on one store overwrite each other's chunks and shapes and lose rows without an
error, so a backend that writes holds the store's lease: the object ``<store>.lease`` beside
the store (``run.zarr.lease`` beside ``run.zarr``; JSON: a random owner id, host, pid, when
it was last renewed, how long it lasts). Beside, not inside: zarr warns about every object
of a group that is not a node, to every reader of the root group. A store at the root of a
bucket, which has nothing beside it, keeps it inside as ``writebehind.lease``.

- **Taking it.** It is created with an exclusive create (``O_EXCL`` on a directory, a
  conditional PUT on object storage), then read back: of two writers opening at once, one
  owns it and the other raises :class:`~writebehind.StoreInUseError`.
- **Holding it.** The backend's I/O loop renews it every third of its duration while the
  backend is open, so an idle writer keeps it; the renewal first reads it, and a lease found
  taken over makes every later commit raise instead of writing shapes.
- **After a crash.** A lease not renewed for its duration (``lease_seconds``, 60 s by
  default) is taken over by the next writer, as is at once a lease of a process of this
  host that is gone. Taking over deletes the stale lease and creates a new one; two writers
  taking over the same stale lease in the same instant can both succeed (the store has no
  conditional replace), which a second read narrows but does not close.
- **Groups.** A writer of one group of a shared hierarchy (``group=``) holds the lease of
  that group: ``<hierarchy>.leases/<group>.lease`` beside the hierarchy
  (``ens.zarr.leases/replica-0.lease``), so writers of different groups run at once. After
  taking its own lease a writer looks for *rivals*, leases of writers whose part overlaps
  its own (the hierarchy's lease, a group's ancestors and descendants); finding one alive,
  it deletes its own and raises. Of two overlapping writers taking their leases at once,
  each finds the other's or one of them is refused: never both admitted.
- **Giving it back.** ``close`` deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype

from .._errors import StoreInUseError

__all__ = ["LEASE_KEY", "Lease"]

LEASE_KEY = "writebehind.lease"
logger = logging.getLogger("writebehind")


class Lease:
    """The lease of one writer on one store (see the module's docstring)."""

    def __init__(
        self,
        store: Store,
        key: str,
        target: str,
        seconds: float,
        rivals: Callable[[], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.store = store
        self.rivals = rivals  # keys of the leases that exclude this one (see "Groups")
        self.key = key
        self.target = target
        self.seconds = seconds
        self.owner = uuid.uuid4().hex
        self.lost: str = ""  # why the lease is no longer ours ("" while it is)
        self._renewing: asyncio.Task[None] | None = None

    def _record(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "target": self.target,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "renewed": time.time(),
            "seconds": self.seconds,
        }

    async def _read(self, key: str | None = None) -> dict[str, Any] | None:
        buffer = await self.store.get(key or self.key, prototype=default_buffer_prototype())
        if buffer is None:
            return None
        try:
            record = json.loads(buffer.to_bytes())
        except ValueError:
            return {}  # damaged (a torn write on a file system without atomic rename)
        return record if isinstance(record, dict) else {}

    async def _put(self, exclusive: bool) -> None:
        data = default_buffer_prototype().buffer.from_bytes(json.dumps(self._record()).encode())
        if exclusive:
            await self.store.set_if_not_exists(self.key, data)
        else:
            await self.store.set(self.key, data)

    async def acquire(self) -> None:
        """Take the lease (taking over a stale one), and start renewing it.

        Raises
        ------
        StoreInUseError
            Another writer holds it.
        """
        held = await self._read()
        if held is not None and held.get("owner") != self.owner:
            why = _stale(held)
            if not why:
                raise StoreInUseError(_in_use(self.target, held))
            logger.warning(
                "writebehind: %s: taking over the lease of a writer that %s", self.target, why
            )
            again = await self._read()
            if again is not None and again.get("owner") == held.get("owner"):
                await self.store.delete(self.key)
        await self._put(exclusive=True)
        held = await self._read()
        if held is None or held.get("owner") != self.owner:
            raise StoreInUseError(_in_use(self.target, held or {}))
        await self._refuse_rivals()
        self._renewing = asyncio.ensure_future(self._renew_forever())

    async def _refuse_rivals(self) -> None:
        """Give the lease back and raise if a live writer holds an overlapping one."""
        for key in await self.rivals() if self.rivals is not None else []:
            if key == self.key:
                continue
            held = await self._read(key)
            if held is not None and held.get("owner") != self.owner and not _stale(held):
                await self.store.delete(self.key)
                raise StoreInUseError(_in_use(self.target, held))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                held = await self._read()
            except Exception:
                continue
            if held is None or held.get("owner") != self.owner:
                self.lost = _in_use(self.target, held or {}) if held else "its lease was deleted"
                return
            with contextlib.suppress(Exception):
                await self._put(exclusive=False)

    async def release(self) -> None:
        """Stop renewing, and delete the lease if it is still ours."""
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        held = await self._read()
        if held is not None and held.get("owner") == self.owner:
            await self.store.delete(self.key)


def _stale(held: dict[str, Any]) -> str:
    """Why the lease ``held`` may be taken over ("" if it may not)."""
    try:
        renewed, seconds = float(held["renewed"]), float(held["seconds"])
    except (KeyError, TypeError, ValueError):
        return "left a damaged lease"
    if time.time() - renewed > seconds:
        return f"has not renewed it for {time.time() - renewed:.0f} s (more than {seconds:g} s)"
    if held.get("host") == socket.gethostname() and not _alive(held.get("pid")):
        return f"was process {held.get('pid')} of this host, which is gone"
    return ""


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _in_use(target: str, held: dict[str, Any]) -> str:
    other = held.get("target")
    what = (
        f"{target!r} is being written"
        if other in (None, target)
        else (f"{target!r} overlaps {other!r}, which is being written")
    )
    return (
        f"{what} by another writer (process {held.get('pid')} on "
        f"{held.get('host')!r}): one writer per store (or group); open it with 'r' to read "
        "it, or wait until that writer closes it (a writer that died leaves a lease that expires "
        f"{held.get('seconds')} s after its last renewal)"
    )
