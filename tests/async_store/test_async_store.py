"""AsyncStorageInterface: the sync store's API as coroutines, on asyncio and trio (issue 3)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import writebehind
from writebehind import (
    AsyncHandle,
    AsyncStorageInterface,
    AsyncStorageInterfaceDirVar,
    NetCDFIODriver,
    ReadOnlyError,
    StoreClosedError,
    open_async,
)

# Async store behaviour on asyncio and trio, on the netCDF and the memory backend.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@pytest.fixture
async def astore(nc_path):
    async with open_async(nc_path, "w") as store:
        yield store


# -- the issue's example ------------------------------------------------------------------
async def test_issue_example_reads_back_every_earlier_write(nc_path):
    async with AsyncStorageInterface(NetCDFIODriver(str(nc_path))) as store:
        for step in range(5):
            await store.traj.positions.append(np.full((4, 3), step, dtype=np.float64))
        await store.traj.energy.append(1.5)
        await store.traj.energy.write(-2.5, at_index=-1)
        await store.traj.add_metadata("integrator", "langevin")
        frames = await store.traj.positions.read()
        last = await store.traj.positions.read(at_index=-1)
        await store.flush(durable=True)
        assert frames[:, 0, 0].tolist() == [0, 1, 2, 3, 4]
        assert last[0, 0] == 4
        assert (await store.traj.energy.read()).tolist() == [-2.5]
        assert await store.traj.read_metadata() == {"integrator": "langevin"}


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


# -- navigation mirrors the sync store ---------------------------------------------------
async def test_attribute_and_item_access_reach_the_same_node(astore):
    assert astore.traj.positions is astore["traj/positions"]
    assert isinstance(astore.traj.positions, AsyncStorageInterfaceDirVar)


async def test_in_iteration_and_len_see_what_was_written(astore):
    await astore.traj.positions.append(1.0)
    await astore.traj.positions.append(2.0)
    await astore.temperature.write(300.0)
    assert "traj/positions" in astore
    assert "traj/velocities" not in astore
    assert list(astore) == ["temperature", "traj"]
    assert list(astore.traj) == ["positions"]
    assert len(astore.traj.positions) == 2


async def test_store_reopened_in_append_mode_knows_existing_variables(open_async_store, nc_path):
    async with open_async_store(nc_path, "w") as store:
        await store.x.append(1)
    async with open_async_store(nc_path, "a") as store:
        assert "x" in store
        await store.x.append(2)
        assert (await store.x.read()).tolist() == [1, 2]


# -- writes and reads ----------------------------------------------------------------------
async def test_append_snapshots_the_value_before_returning(astore):
    frame = np.zeros(3)
    await astore.x.append(frame)
    frame[:] = 7.0
    await astore.x.append(frame)
    np.testing.assert_array_equal(await astore.x.read(), [[0, 0, 0], [7, 7, 7]])


async def test_read_with_a_slice_returns_those_entries(astore):
    for i in range(6):
        await astore.x.append(i)
    assert (await astore.x.read(at_index=slice(1, 5, 2))).tolist() == [1, 3]


async def test_write_at_index_overwrites_one_entry(astore):
    for i in range(3):
        await astore.x.append(i)
    await astore.x.write(10, at_index=1)
    assert (await astore.x.read()).tolist() == [0, 10, 2]


async def test_append_of_a_mismatched_shape_raises_value_error_and_appends_nothing(astore):
    await astore.x.append(np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        await astore.x.append(np.zeros(4))
    assert len(astore.x) == 1


async def test_read_of_a_missing_variable_raises_key_error(astore):
    with pytest.raises(KeyError, match="nothing"):
        await astore.nothing.read()


async def test_write_through_a_read_only_store_raises_read_only_error(open_async_store, nc_path):
    async with open_async_store(nc_path, "w") as store:
        await store.x.append(1)
    async with open_async_store(nc_path, "r") as store:
        with pytest.raises(ReadOnlyError):
            await store.x.append(2)


async def test_root_metadata_round_trips(astore):
    await astore.add_metadata("title", "run 1")
    assert await astore.read_metadata() == {"title": "run 1"}


async def test_metadata_of_an_unbound_node_is_kept_until_the_node_exists(open_async_store, nc_path):
    async with open_async_store(nc_path, "w") as store:
        await store.traj.add_metadata("integrator", "langevin")
        assert await store.traj.read_metadata() == {"integrator": "langevin"}
        await store.traj.x.append(1)
    async with open_async_store(nc_path, "r") as store:
        assert await store.traj.read_metadata() == {"integrator": "langevin"}


async def test_units_metadata_of_a_variable_is_refused_at_the_call(astore):
    await astore.x.append(1.0)
    with pytest.raises(ValueError, match="the value owns its units"):
        await astore.x.add_metadata("units", "meter")
    assert await astore.x.read_metadata() == {}


async def test_stats_count_the_operations_applied_after_flush(astore):
    for i in range(10):
        await astore.x.append(i)
    await astore.flush()
    stats = astore.stats()
    assert stats.pending_operations == 0
    assert stats.operations_applied == stats.operations_enqueued


async def test_to_xarray_returns_the_group_as_a_dataset(astore):
    pytest.importorskip("xarray", reason="xarray is not installed (pip install -e '.[xarray]')")
    for i in range(3):
        await astore.traj.energy.append(float(i))
    dataset = await astore.traj.to_xarray()
    assert dataset["energy"].values.tolist() == [0.0, 1.0, 2.0]


# -- completion stages ---------------------------------------------------------------------
async def test_append_returns_an_async_handle(astore):
    handle = await astore.x.append(1.0)
    assert isinstance(handle, AsyncHandle)
    assert isinstance(handle.sync_handle, writebehind.Handle)


async def test_awaiting_committed_makes_the_handle_committed(astore):
    handle = await astore.x.append(1.0)
    assert not handle.is_committed()
    await handle.committed()
    assert handle.is_committed()


async def test_awaiting_durable_makes_the_handle_durable(astore):
    handle = await astore.x.write(np.arange(4.0))
    await handle.durable()
    assert handle.is_durable()
    assert handle.is_committed()


async def test_committed_of_a_closed_store_returns_since_close_synced_it(open_async_store, nc_path):
    store = await open_async_store(nc_path, "w")
    handle = await store.x.append(1.0)
    await store.aclose()
    await handle.committed()
    assert handle.is_committed()


# -- closing -------------------------------------------------------------------------------
async def test_aclose_twice_does_nothing_the_second_time(open_async_store, nc_path):
    store = await open_async_store(nc_path, "w")
    await store.x.append(1)
    await store.aclose()
    await store.aclose()
    assert store.closed


async def test_calls_after_aclose_raise_store_closed_error(open_async_store, nc_path):
    store = await open_async_store(nc_path, "w")
    node = store.x
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await node.append(1)
    with pytest.raises(StoreClosedError):
        await store.flush()


async def test_exception_in_async_with_propagates_and_the_store_closes(
    open_async_store, open_store, nc_path
):
    with pytest.raises(KeyError, match="boom"):
        async with open_async_store(nc_path, "w") as store:
            await store.x.append(1)
            raise KeyError("boom")
    assert store.closed
    with open_store(nc_path, "r") as sync_store:
        assert sync_store.x.read().tolist() == [1]


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
