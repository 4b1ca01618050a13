"""The ranges no flush of a session can write, found incrementally for the metadata journal."""

from __future__ import annotations

import os
from pathlib import Path

import netCDF4
import numpy as np

import writebehind
from writebehind.drivers.netcdf import LIBRARY_LOCK
from writebehind.drivers.netcdf.journal import _rightmost_path, index_of
from writebehind.drivers.netcdf.stable import _B_TREE_K, Extents, StableRanges

NODE_CHILDREN = 2 * _B_TREE_K  # HDF5's chunk-index nodes, as netCDF makes them (64)


def _file_of_one_row_chunks(path: Path, rows: int, **options: object) -> netCDF4.Dataset:
    """An open netCDF-4 file with a variable of ``rows`` chunks of one row, synced."""
    dataset = netCDF4.Dataset(str(path), "w")
    dataset.createDimension("entry", None)
    dataset.createDimension("atom", 100)
    variable = dataset.createVariable(
        "positions", "f8", ("entry", "atom"), chunksizes=(1, 100), **options
    )
    _append(variable, rows)
    dataset.sync()
    return dataset


def _append(variable: netCDF4.Variable, rows: int) -> None:
    start = variable.shape[0]
    variable[start : start + rows] = np.arange(start, start + rows)[:, None] * np.ones(100)


def _updated(ranges: StableRanges) -> StableRanges:
    with LIBRARY_LOCK:
        assert ranges.update()
    return ranges


def _index_nodes(path: Path) -> tuple[set[int], set[int], int]:
    """Every node of the variable's chunk index, those on its rightmost path, and their size
    (read from the file; the index has two levels)."""
    with open(path, "rb") as file:
        header = _header_address(path)
        index = index_of(file, header, 2)
        assert index is not None
        path_nodes = {address for address, _ in _rightmost_path(file.fileno(), index)}
        root = os.pread(file.fileno(), index.node_size, index.root)
        assert root[5] == 1  # two levels: a root over leaves
        used = int.from_bytes(root[6:8], "little")
        stride = index.key_size + 8
        leaves = {
            int.from_bytes(root[at : at + 8], "little")
            for at in (24 + n * stride + index.key_size for n in range(used))
        }
    return leaves | {index.root}, path_nodes, index.node_size


def _header_address(path: Path) -> int:
    from writebehind.drivers.netcdf.hdf5 import header_addresses

    with LIBRARY_LOCK:
        found = header_addresses(str(path), {"positions": 2})
    assert found is not None
    return found["positions"][0]


def _inside(gaps: list[tuple[int, int]], address: int, length: int) -> bool:
    return any(start <= address and address + length <= start + n for start, n in gaps)


def _touches(gaps: list[tuple[int, int]], address: int, length: int) -> bool:
    return any(start < address + length and address < start + n for start, n in gaps)


# -- the set of ranges --------------------------------------------------------------------------
def test_extents_merge_touching_and_overlapping_ranges():
    extents = Extents()
    for address, length in [(100, 50), (10, 20), (140, 30), (30, 5), (400, 100), (120, 5)]:
        extents.add(address, length)
    assert len(extents) == 3  # [10, 35), [100, 170), [400, 500)
    assert extents.gaps(450) == [(0, 10), (35, 65), (170, 230)]
    assert extents.gaps(50) == [(0, 10), (35, 15)]


def test_extents_ignore_empty_ranges_and_ranges_added_twice():
    extents = Extents()
    extents.add(10, 0)
    extents.add(10, 5)
    extents.add(10, 5)
    extents.add(11, 2)
    assert extents.gaps(20) == [(0, 10), (15, 5)]


# -- what is stable ----------------------------------------------------------------------------
def test_index_nodes_off_the_rightmost_path_are_stable_and_the_path_is_not(nc_path):
    dataset = _file_of_one_row_chunks(nc_path, rows=5 * NODE_CHILDREN)
    try:
        gaps = _updated(StableRanges(str(nc_path))).gaps(nc_path.stat().st_size)
        nodes, path_nodes, size = _index_nodes(nc_path)
        assert len(nodes) >= 4 and len(path_nodes) == 2
        for address in path_nodes:
            assert _inside(gaps, address, size)  # journaled: a flush rewrites them
        for address in nodes - path_nodes:
            assert not _touches(gaps, address, size)  # left out: no flush writes them
    finally:
        dataset.close()


def test_the_index_nodes_of_a_checksummed_variable_are_all_journaled(nc_path):
    dataset = _file_of_one_row_chunks(nc_path, rows=5 * NODE_CHILDREN, fletcher32=True)
    try:
        gaps = _updated(StableRanges(str(nc_path))).gaps(nc_path.stat().st_size)
        nodes, _, size = _index_nodes(nc_path)
        for address in nodes:
            assert _inside(gaps, address, size)
    finally:
        dataset.close()


def test_found_incrementally_the_ranges_are_those_found_from_scratch(nc_path):
    dataset = _file_of_one_row_chunks(nc_path, rows=3 * NODE_CHILDREN)
    try:
        ranges = _updated(StableRanges(str(nc_path)))
        for added in (1, NODE_CHILDREN, 2 * NODE_CHILDREN + 5):
            _append(dataset["positions"], added)
            dataset.createVariable(f"v{added}", "i4", ("entry",))[0:3] = [1, 2, 3]
            dataset.sync()
            size = nc_path.stat().st_size
            assert _updated(ranges).gaps(size) == _updated(StableRanges(str(nc_path))).gaps(size)
    finally:
        dataset.close()


def test_an_update_reads_only_the_index_nodes_added_since_the_last(nc_path):
    dataset = _file_of_one_row_chunks(nc_path, rows=10 * NODE_CHILDREN)
    try:
        ranges = _updated(StableRanges(str(nc_path)))
        nodes, path_nodes, _ = _index_nodes(nc_path)
        assert ranges.lookups == len(nodes)  # the first reads every node
        assert _updated(ranges).lookups == len(path_nodes)  # then the rightmost path
        _append(dataset["positions"], 3)
        dataset.sync()
        assert _updated(ranges).lookups == len(path_nodes)  # the last leaf took them
        _append(dataset["positions"], 2 * NODE_CHILDREN)
        dataset.sync()
        new_nodes = len(_index_nodes(nc_path)[0]) - len(nodes)
        assert _updated(ranges).lookups == len(path_nodes) + new_nodes
    finally:
        dataset.close()


def test_raw_data_and_contiguous_storage_are_stable(nc_path):
    dataset = _file_of_one_row_chunks(nc_path, rows=3)
    dataset.createDimension("xyz", 3)
    dataset.createVariable("box", "f8", ("xyz",))[:] = [1.0, 2.0, 3.0]
    dataset.sync()
    try:
        gaps = _updated(StableRanges(str(nc_path))).gaps(nc_path.stat().st_size)
        with open(nc_path, "rb") as file:
            data = file.read()
        row = (np.arange(100.0) * 0 + 2.0).tobytes()  # the third chunk's bytes
        box = np.array([1.0, 2.0, 3.0]).tobytes()
        for raw in (row, box):
            at = data.index(raw)
            assert not _touches(gaps, at, len(raw))
    finally:
        dataset.close()


def test_a_file_hdf5_cannot_open_has_no_stable_ranges(tmp_path):
    path = tmp_path / "not.nc"
    path.write_bytes(b"not an HDF5 file" * 100)
    with LIBRARY_LOCK:
        assert not StableRanges(str(path)).update()


# -- keeping up during a long run --------------------------------------------------------------
def _gaps_kept_and_fresh(path: Path, monkeypatch, keep_up_bytes: int):
    from writebehind.drivers.netcdf import backend as netcdf

    monkeypatch.setattr(netcdf, "KEEP_UP_BYTES", keep_up_bytes)
    with writebehind.open(path, "w") as store:
        store.x.append(np.zeros(3000))  # 24 KB entries: 4 a chunk
        store.flush()  # created the variable: the journal found the datasets
        for _ in range(3):
            for _ in range(100):
                store.x.append(np.ones(3000))
            store.flush()
        kept = store.storage_driver.backend._metadata_journal._stable  # type: ignore[attr-defined]
        size = path.stat().st_size
        fresh = _updated(StableRanges(str(path)))
        return kept.gaps(size), fresh.gaps(size)


def test_a_sync_after_many_entries_reads_the_indexes_they_grew(nc_path, monkeypatch):
    kept, fresh = _gaps_kept_and_fresh(nc_path, monkeypatch, keep_up_bytes=1)
    assert kept == fresh


def test_a_sync_after_few_entries_reads_no_index(nc_path, monkeypatch):
    kept, fresh = _gaps_kept_and_fresh(nc_path, monkeypatch, keep_up_bytes=1 << 40)
    assert sum(n for _, n in kept) > sum(n for _, n in fresh) + 300 * 24_000
