"""What the journals keep of a file across flushes stays true of it.

The chunk-index journal and the metadata journal's stable ranges are kept across flushes and
read again only for the variables a flush created or wrote (``journal``, ``stable``). After
each flush, the chunk-index journal must hold the rightmost path of every index entries were
appended to as it is on disk, and the stable ranges must be those a listing of every dataset
from scratch finds: a stale cached listing fails one of these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

import writebehind
from writebehind.drivers.netcdf import LIBRARY_LOCK
from writebehind.drivers.netcdf.hdf5 import header_addresses
from writebehind.drivers.netcdf.journal import _rightmost_path, index_of, load_journal
from writebehind.drivers.netcdf.stable import StableRanges

SMALL = np.zeros(3000)  # 24 KB: a few entries a chunk
LARGE = np.zeros(12_500)  # 100 KB: one entry a chunk, so that 65 of them split an index root
NODE_CHILDREN = 64


def _backend(store: Any) -> Any:
    return store.storage_driver.backend


def _assert_index_journal_current(path: Path, store: Any, appended: set[str]) -> None:
    """The journal holds, as they are on disk, the rightmost path of each index of
    ``appended`` (found afresh by HDF5, not from the journal's cache)."""
    loaded = load_journal(str(path))
    assert loaded is not None, "no complete chunk-index journal after a data flush"
    records = set(loaded[1])
    with LIBRARY_LOCK:
        headers = header_addresses(str(path), _backend(store)._appendable_variables())
    assert headers is not None
    fd = os.open(path, os.O_RDONLY)
    try:
        for address, node in records:
            assert os.pread(fd, len(node), address) == node, "a journaled node is stale"
        with open(path, "rb") as file:
            for name in appended:
                header, ndim = headers[name]
                index = index_of(file, header, ndim)
                assert index is not None
                nodes = _rightmost_path(fd, index)
                assert nodes
                assert set(nodes) <= records, f"{name}'s index is not in the journal"
    finally:
        os.close(fd)


def _assert_stable_ranges_current(path: Path, store: Any) -> None:
    """The metadata journal's stable ranges, brought up to date as at the next structural
    flush, are those found from scratch."""
    kept = _backend(store)._metadata_journal._stable
    with LIBRARY_LOCK:
        assert kept.update()
        fresh = StableRanges(str(path))
        assert fresh.update()
    size = path.stat().st_size
    assert kept.gaps(size) == fresh.gaps(size)


def test_a_variable_created_and_grown_in_one_flush_then_another_structural_flush(nc_path):
    with writebehind.open(nc_path, "w") as store:
        store.a.append(SMALL)
        store.flush()
        for _ in range(30):  # created and grown past its first chunks in one flush
            store.b.append(SMALL)
        store.a.append(SMALL)
        store.flush()
        _assert_stable_ranges_current(nc_path, store)
        store.c.append(SMALL)  # another structural flush
        store.b.append(SMALL)
        store.flush()
        _assert_stable_ranges_current(nc_path, store)
        for name in "abc":
            store[name].append(SMALL)
        store.flush()
        _assert_index_journal_current(nc_path, store, {"a", "b", "c"})
        _assert_stable_ranges_current(nc_path, store)


def test_an_index_whose_root_splits_between_flushes(nc_path):
    with writebehind.open(nc_path, "w") as store:
        store.x.append(LARGE)
        store.flush()
        store.x.append(LARGE)
        store.flush()  # the journal holds x's root, a leaf
        for _ in range(2 * NODE_CHILDREN):  # the root splits: same address, two levels
            store.x.append(LARGE)
        store.flush()
        _assert_index_journal_current(nc_path, store, {"x"})
        store.y.append(LARGE)  # a structural flush after the split
        store.flush()
        _assert_stable_ranges_current(nc_path, store)
        for _ in range(NODE_CHILDREN):  # a new leaf under the new root
            store.x.append(LARGE)
        store.y.append(LARGE)
        store.flush()
        _assert_index_journal_current(nc_path, store, {"x", "y"})
        _assert_stable_ranges_current(nc_path, store)


def test_a_reopened_file_then_flushed(nc_path):
    with writebehind.open(nc_path, "w") as store:
        for _ in range(20):
            store.a.append(SMALL)
            store.b.append(SMALL)
    with writebehind.open(nc_path, "a") as store:
        store.a.append(SMALL)  # an index this session has not read yet
        store.flush()
        _assert_index_journal_current(nc_path, store, {"a"})
        store.c.append(SMALL)  # the session's first structural flush lists every dataset
        store.flush()
        _assert_stable_ranges_current(nc_path, store)
        store.b.append(SMALL)
        store.c.append(SMALL)
        store.flush()
        _assert_index_journal_current(nc_path, store, {"a", "b", "c"})
        _assert_stable_ranges_current(nc_path, store)


def test_a_data_flush_reads_only_the_indexes_it_appended_to(nc_path):
    with writebehind.open(nc_path, "w") as store:
        for j in range(30):
            store[f"v{j}"].append(SMALL)
        store.flush()
        for j in range(30):
            store[f"v{j}"].append(SMALL)
        store.flush()
        store.v7.append(SMALL)
        store.flush()
        assert _backend(store)._index_journal.lookups == 1  # v7's root, a leaf
        _assert_index_journal_current(nc_path, store, {f"v{j}" for j in range(30)})


def test_a_structural_flush_reads_only_the_datasets_changed_since_the_last(nc_path):
    with writebehind.open(nc_path, "w") as store:
        for j in range(30):
            store[f"v{j}"].append(SMALL)
        store.flush()
        store.one.append(SMALL)
        store.flush()  # its journal looked at the 30 variables the last flush created
        store.two.append(SMALL)
        store.flush()
        stable = _backend(store)._metadata_journal._stable
        assert stable.lookups == 1  # one's root, a leaf: none of the 30 others
        _assert_stable_ranges_current(nc_path, store)


def test_a_variable_also_written_through_the_raw_file(nc_path):
    # openmmtools code writes to driver.ncfile directly: the driver cannot tell which
    # indexes changed, so every index it keeps is read again at each sync.
    from writebehind import NetCDFIODriver, StorageInterface

    driver = NetCDFIODriver(str(nc_path))
    store = StorageInterface(driver)
    store.x.append(LARGE)
    store.y.append(LARGE)
    driver.sync()
    store.x.append(LARGE)
    store.y.append(LARGE)
    driver.sync()  # the journal holds x's and y's roots
    x = driver.ncfile.variables["x"]
    x[2:6] = np.ones((4, LARGE.size))  # four chunks more in x's index, behind the driver
    store.y.append(LARGE)
    driver.sync()
    _assert_index_journal_current(nc_path, store, {"x", "y"})
    driver.close()


def test_a_reopened_variable_written_only_through_the_raw_file(nc_path):
    from writebehind import NetCDFIODriver, StorageInterface

    with writebehind.open(nc_path, "w") as store:
        for _ in range(2):
            store.x.append(LARGE)
            store.y.append(LARGE)
    driver = NetCDFIODriver(str(nc_path))
    store = StorageInterface(driver)
    store.y.append(LARGE)
    driver.sync()  # x not appended to in this session
    driver.ncfile.variables["x"][2:6] = np.ones((4, LARGE.size))
    store.y.append(LARGE)
    driver.sync()
    store.y.append(LARGE)
    driver.sync()  # the journal holds x's index as this sync left it, too
    _assert_index_journal_current(nc_path, store, {"x", "y"})
    driver.close()
