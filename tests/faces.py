"""The async store called like the sync one, so that one behaviour test runs on both faces.

A test of the behaviour suite asks for ``open_face`` (or ``face_store``, conftest.py) and is
run on each face: ``"sync"``, the :class:`~writebehind.StorageInterface` itself, and
``"async"``, an :class:`~writebehind.AsyncStorageInterface` wrapped in :class:`Awaited`. The
wrapper awaits every coroutine of the async store, its nodes and its handles on an event loop
(asyncio or trio) that runs in a portal thread, and wraps what they return, so the test
writes ``store.x.append(1)``, ``store.flush()`` or ``with store:`` once for both. Nothing is
translated: each call is the async store's own (``close`` is its ``aclose`` under the sync
name, ``with`` its ``async with``), its exceptions arrive as they are raised.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from anyio.from_thread import BlockingPortal

from writebehind import AsyncHandle, AsyncStorageInterface, AsyncStorageInterfaceDirVar

#: What the async face returns wrapped: its store, its nodes and its handles.
_ASYNC_TYPES = (AsyncStorageInterface, AsyncStorageInterfaceDirVar, AsyncHandle)


class Awaited:
    """An object of the async face, used as its sync twin is (see the module docstring)."""

    __slots__ = ("_portal", "target")

    def __init__(self, target: Any, portal: BlockingPortal):
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "_portal", portal)

    def _wrap(self, value: Any) -> Any:
        return Awaited(value, self._portal) if isinstance(value, _ASYNC_TYPES) else value

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        # On the loop's thread; a coroutine it returns is awaited there.
        return self._wrap(self._portal.call(functools.partial(function, *args, **kwargs)))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.target, name)
        if callable(value) and not isinstance(value, _ASYNC_TYPES):
            return functools.partial(self._call, value)
        return self._wrap(value)

    def __getitem__(self, path: str) -> Any:
        return self._wrap(self.target[path])

    def __contains__(self, path: object) -> bool:
        return path in self.target

    def __iter__(self) -> Iterator[str]:
        return iter(self.target)

    def __len__(self) -> int:
        return len(self.target)

    def __enter__(self) -> Awaited:
        self._call(self.target.__aenter__)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._portal.call(self.target.__aexit__, *exc_info)

    def __repr__(self) -> str:
        return f"Awaited({self.target!r})"


def unwrapped(value: Any) -> Any:
    """The face's own object: the async store's behind :class:`Awaited`, else ``value``."""
    return value.target if isinstance(value, Awaited) else value


async def opened(store: AsyncStorageInterface) -> AsyncStorageInterface:
    """``await store``: what opening the async store is (the sync one opens when made)."""
    return await store
