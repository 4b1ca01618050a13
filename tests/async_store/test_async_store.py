"""AsyncStorageInterface: what only the async face has, on asyncio and trio (issue 3).

Every behaviour the two faces share (reads, writes, metadata, errors, handles, flush, close)
is tested once on both, by the tests that ask for ``face_store`` or ``open_face``
(tests/store/, tests/faces.py). Here: opening (a store made, then awaited or entered),
``aclose`` and ``close``, and one file written by one face and read by the other.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from writebehind import AsyncStorageInterface, NetCDFIODriver, open_async

# Async store behaviour on asyncio and trio, on the netCDF and the memory backend.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@pytest.fixture
async def astore(nc_path):
    async with open_async(nc_path, "w") as store:
        yield store


# -- one file, two faces ------------------------------------------------------------------
async def test_what_the_async_store_wrote_reads_back_with_the_sync_store(
    open_async_store, open_store, nc_path
):
    async with open_async_store(nc_path) as store:
        await store.x.append(np.arange(3.0))
        await store.y.write("hello")
    with open_store(nc_path, "r") as sync_store:
        np.testing.assert_array_equal(sync_store.x.read(), [[0.0, 1.0, 2.0]])
        assert sync_store.y.read() == "hello"


# -- opening -------------------------------------------------------------------------------
async def test_open_async_returns_the_store_not_a_coroutine(open_async_store, nc_path):
    store = open_async_store(nc_path, "w")
    try:
        assert isinstance(store, AsyncStorageInterface)
        assert not inspect.iscoroutine(store)
    finally:
        await store.aclose()


async def test_awaiting_the_store_opens_it_without_a_context_manager(open_async_store, nc_path):
    store = await open_async_store(nc_path, "w")
    await store.x.append(1)
    assert (await store.x.read()).tolist() == [1]
    await store.aclose()
    assert store.closed


async def test_navigating_a_store_not_yet_entered_raises_runtime_error(open_async_store, nc_path):
    store = open_async_store(nc_path, "w")
    with pytest.raises(RuntimeError, match="async with"):
        store.traj  # noqa: B018
    await store.aclose()


async def test_opening_a_missing_file_read_only_raises_file_not_found_on_entry(
    open_async_store, nc_path
):
    store = open_async_store(nc_path, "r")
    with pytest.raises(FileNotFoundError):
        async with store:
            pass
    assert not nc_path.exists()


async def test_file_name_and_storage_driver_are_the_sync_stores(nc_path):
    driver = NetCDFIODriver(str(nc_path), "w")
    async with AsyncStorageInterface(driver) as store:
        assert store.file_name == str(nc_path)
        assert store.storage_driver is driver


# -- closing -------------------------------------------------------------------------------
async def test_close_is_aclose_under_the_sync_stores_name(open_async_store, open_store, nc_path):
    store = await open_async_store(nc_path, "w")
    await store.x.append(1)
    await store.close()
    assert store.closed
    with open_store(nc_path, "r") as sync_store:
        assert sync_store.x.read().tolist() == [1]


async def test_a_node_named_close_is_reached_by_item_access(astore):
    await astore["close"].append(1)
    assert (await astore["close"].read()).tolist() == [1]
    assert not astore.closed


async def test_a_store_never_entered_closes_cleanly(open_async_store, nc_path):
    store = open_async_store(nc_path, "w")
    await store.aclose()
    assert store.closed
