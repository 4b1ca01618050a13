"""What the netCDF driver's scan reports of a file it opens: every variable's shape as netCDF
reports it, found in a number of library calls that grows with the variables (issue 16;
drivers/netcdf/shapes.py), and the same when a library it uses for that cannot be reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

import writebehind
from writebehind.drivers.netcdf import NetCDFBackend
from writebehind.drivers.netcdf import hdf5 as _hdf5
from writebehind.drivers.netcdf import shapes as _shapes


def _scanned(path: Path) -> dict[str, tuple[tuple[int, ...], bool, int]]:
    """path -> (entry or value shape, appendable, length) of every variable scanned."""
    driver = NetCDFBackend(path, "r")
    driver.open()
    try:
        return {
            r.path: (r.layout.shape, r.appendable, r.length)
            for r in driver.scan()
            if not r.is_group and r.layout is not None
        }
    finally:
        driver.close()


def _as_netcdf_says(path: Path) -> dict[str, tuple[tuple[int, ...], bool, int]]:
    """The same, asked of netCDF4-python one variable at a time (the slow way)."""
    out: dict[str, tuple[tuple[int, ...], bool, int]] = {}

    def walk(group: Any, prefix: str) -> None:
        for name, variable in group.variables.items():
            dims = variable.get_dims()
            shape = tuple(len(d) for d in dims)
            grows = bool(dims) and dims[0].isunlimited()
            out[prefix + name] = (shape[1:], True, shape[0]) if grows else (shape, False, 0)
        for name, child in group.groups.items():
            walk(child, f"{prefix}{name}/")

    with netCDF4.Dataset(path) as dataset:
        walk(dataset, "")
    return out


@pytest.fixture
def shared_time(tmp_path: Path) -> Path:
    """A file whose variables share one unlimited dimension, at different lengths, one of
    them in a child group (netCDF: the dimension is as long as the longest)."""
    path = tmp_path / "shared.nc"
    with netCDF4.Dataset(path, "w") as dataset:
        dataset.createDimension("time", None)
        dataset.createDimension("x", 3)
        dataset.createVariable("long", "f8", ("time",))[0:7] = np.arange(7.0)
        dataset.createVariable("field", "f4", ("time", "x"))[0:5] = np.ones((5, 3))
        child = dataset.createGroup("child")
        child.createVariable("deep", "i4", ("time",))[0:2] = [1, 2]
        child.createVariable("fixed", "i4", ("x",))[:] = [1, 2, 3]
        dataset.createVariable("scalar", "f8", ())
    return path


@pytest.fixture
def many_in_one_group(tmp_path: Path) -> Path:
    """writebehind's layout, many variables in one group: each its own unlimited dimension."""
    path = tmp_path / "flat.nc"
    with writebehind.open(path, "w") as store:
        for n in range(120):
            for _ in range(1 + n % 4):
                store[f"v{n}"].append(np.full(3, float(n)))
        store.log.append("first")  # log_entry is the dimension of log...
        for k in range(3):
            store.log_entry.append(k)  # ...and this variable's dataset is _nc4_non_coord_
    return path


def test_a_shared_unlimited_dimension_is_as_long_as_its_longest_variable(shared_time):
    scanned = _scanned(shared_time)
    assert scanned == _as_netcdf_says(shared_time)
    assert scanned["field"][2] == scanned["child/deep"][2] == 7


def test_each_variable_of_a_large_group_has_its_own_length(many_in_one_group):
    scanned = _scanned(many_in_one_group)
    assert scanned == _as_netcdf_says(many_in_one_group)
    assert [scanned[f"v{n}"][2] for n in range(8)] == [1, 2, 3, 4, 1, 2, 3, 4]


def test_a_variable_named_like_a_dimension_has_the_length_of_its_own_dataset(
    many_in_one_group,
):
    scanned = _scanned(many_in_one_group)
    assert scanned["log"][2] == 1 and scanned["log_entry"][2] == 3
    with writebehind.open(many_in_one_group, "r") as store:
        assert store.log_entry.read().tolist() == [0, 1, 2]


@pytest.mark.parametrize("fixture", ["shared_time", "many_in_one_group"])
def test_without_hdf5_the_lengths_are_asked_of_netcdf(fixture, request, monkeypatch):
    path = request.getfixturevalue(fixture)
    monkeypatch.setattr(_hdf5, "dataset_extents", lambda *args: None)
    assert _scanned(path) == _as_netcdf_says(path)


def test_a_variable_whose_dataset_is_not_found_has_its_length_asked_of_netcdf(
    shared_time, monkeypatch
):
    found = _hdf5.dataset_extents
    monkeypatch.setattr(
        _hdf5, "dataset_extents", lambda path, names: found(path, names[1:])
    )  # the longest variable on "time" is left out: "time" is asked of netCDF
    assert _scanned(shared_time) == _as_netcdf_says(shared_time)


@pytest.mark.parametrize("fixture", ["shared_time", "many_in_one_group"])
def test_without_netcdf_c_the_unlimited_dimensions_are_asked_of_netcdf4(
    fixture, request, monkeypatch
):
    path = request.getfixturevalue(fixture)
    monkeypatch.setattr(_shapes, "_netcdf_library", lambda: None)
    assert _scanned(path) == _as_netcdf_says(path)


def test_dataset_extents_leaves_out_what_is_not_a_dataset(shared_time):
    driver = NetCDFBackend(shared_time, "r")
    driver.open()
    try:
        extents = _hdf5.dataset_extents(str(shared_time), ["field", "child", "missing"])
    finally:
        driver.close()
    assert extents == {"field": (5, 3)}


def test_dataset_extents_of_a_file_hdf5_cannot_open_is_none(tmp_path):
    path = tmp_path / "classic.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as dataset:
        dataset.createDimension("t", None)
    assert _hdf5.dataset_extents(str(path), ["t"]) is None


def test_the_index_journal_lists_the_variables_on_an_unlimited_first_dimension(shared_time):
    driver = NetCDFBackend(shared_time, "a")
    driver.open()
    try:
        found = driver._appendable_variables()
    finally:
        driver.close()
    assert found == {"long": 1, "field": 2, "child/deep": 1}
