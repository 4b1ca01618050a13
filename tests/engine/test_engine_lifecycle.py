"""The engine's lifecycle (``_engine.Lifecycle``): open, closing, closed; a failure apart."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from writebehind import BackgroundWriteError, StorageInterface, StoreClosedError
from writebehind._engine import Lifecycle
from writebehind.drivers.memory import MemoryBackend


class _FailingBackend(MemoryBackend):
    """A memory backend whose ``write_entries`` raises."""

    def write_entries(self, path: str, start: int, entries: Any) -> None:
        raise OSError("injected")


def test_an_open_store_s_engine_is_open() -> None:
    store = StorageInterface(MemoryBackend())
    assert store._core.engine.state is Lifecycle.OPEN
    store.close()


def test_a_closed_store_s_engine_is_closed() -> None:
    store = StorageInterface(MemoryBackend())
    store.close()
    assert store._core.engine.state is Lifecycle.CLOSED


def test_an_engine_is_closing_while_its_close_waits_in_the_queue() -> None:
    store = StorageInterface(MemoryBackend())
    engine = store._core.engine
    release = threading.Event()
    engine.call("hold the writer", release.wait)
    future = engine.close_future()
    try:
        assert future is not None and engine.state is Lifecycle.CLOSING
        with pytest.raises(StoreClosedError):
            store.x.append(np.zeros(3))
    finally:
        release.set()
    engine.close()
    assert engine.state is Lifecycle.CLOSED


def test_a_failed_engine_stays_open_until_closed_and_refuses_appends() -> None:
    store = StorageInterface(_FailingBackend())
    store.x.append(np.zeros(3))
    with pytest.raises(BackgroundWriteError):
        store.flush()
    engine = store._core.engine
    assert engine.failed and engine.state is Lifecycle.OPEN
    with pytest.raises(BackgroundWriteError):
        store.x.append(np.zeros(3))
    with pytest.raises(BackgroundWriteError):
        store.close()
    assert engine.state is Lifecycle.CLOSED
