"""A flush with nothing new to sync returns at once; one with anything new syncs."""

from __future__ import annotations

from pathlib import Path

import pytest

import writebehind


def open_store(path: Path) -> writebehind.StorageInterface:
    return writebehind.StorageInterface(writebehind.NetCDFIODriver(str(path), "w"))


def count_syncs(store: writebehind.StorageInterface, monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list[bool] = []
    driver = store._core.driver
    sync = driver.sync

    def counted(durable: bool = False) -> None:
        calls.append(durable)
        sync(durable)

    monkeypatch.setattr(driver, "sync", counted)
    return calls


def test_a_flush_with_nothing_new_does_not_sync_again(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.flush()
    store.x.read()  # a read changes nothing either
    store.flush()
    assert calls == []
    store.close()


def test_a_flush_after_an_append_syncs(nc_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.x.append(2.0)
    store.flush()
    assert calls and store.stats().pending_operations == 0
    store.close()


def test_a_durable_flush_after_a_plain_one_still_fsyncs(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.flush(durable=True)
    store.flush(durable=True)  # now nothing new: no second fsync
    assert calls == [True]
    store.close()


def test_a_flush_after_metadata_syncs(nc_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    calls = count_syncs(store, monkeypatch)
    store.x.add_metadata("note", "a")
    store.flush()
    assert calls
    store.close()


def test_a_flush_of_a_closed_store_still_raises(nc_path: Path) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.close()
    with pytest.raises(writebehind.StoreClosedError):
        store.flush()


def test_a_flush_after_a_failed_write_still_raises(
    nc_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(nc_path)
    store.x.append(1.0)
    store.flush()
    driver = store._core.driver

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(driver, "write_entries", broken)
    store.x.append(2.0)
    with pytest.raises(writebehind.BackgroundWriteError):
        store.flush()
    with pytest.raises(writebehind.BackgroundWriteError):
        store.flush()  # sticky: nothing new was applied, and it still raises
    monkeypatch.undo()
    with pytest.raises(writebehind.BackgroundWriteError):
        store.close()
