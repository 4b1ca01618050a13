"""xarray interop: the demo's file in xarray.open_dataset, and node.to_xarray()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind._demo import DemoParameters, run_demo

xr = pytest.importorskip("xarray", reason="xarray is not installed (pip install -e '.[xarray]')")

PARAMETERS = DemoParameters(n_atoms=4, n_steps=20, checkpoint_every=5)
GROUPS = ["checkpoints", "energies", "parameters", "trajectory"]


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xarray") / "demo.nc"
    with writebehind.open(path, "w") as store:
        run_demo(store, PARAMETERS)
    return path


def open_group(path: Path, group: str) -> xr.Dataset:
    with xr.open_dataset(path, group=group) as ds:
        return ds.load()


# -- the file, opened by xarray itself -----------------------------------------------------
@pytest.mark.parametrize("group", GROUPS)
def test_every_group_of_the_demo_file_opens_in_xarray(demo_file: Path, group: str) -> None:
    ds = open_group(demo_file, group)
    with writebehind.open(demo_file, "r") as store:
        assert sorted(ds.data_vars) == list(store[group])


def test_appendable_variable_dims_are_entry_then_axes(demo_file: Path) -> None:
    ds = open_group(demo_file, "trajectory")
    assert ds["positions"].dims == ("positions_entry", "positions_axis1", "positions_axis2")
    assert ds["positions"].shape == (20, 4, 3)
    assert ds["step"].dims == ("step_entry",)


def test_fixed_scalar_has_no_dims(demo_file: Path) -> None:
    ds = open_group(demo_file, "parameters")
    assert ds["temperature"].dims == ()
    assert float(ds["temperature"]) == PARAMETERS.temperature


def test_units_reach_xarray_as_cf_units_attributes(demo_file: Path) -> None:
    assert open_group(demo_file, "trajectory")["positions"].attrs["units"] == "nanometer"
    assert open_group(demo_file, "energies")["total"].attrs["units"] == "kilojoule/mole"
    assert open_group(demo_file, "parameters")["friction"].attrs["units"] == "1/picosecond"


def test_group_metadata_becomes_dataset_attributes(demo_file: Path) -> None:
    assert open_group(demo_file, "trajectory").attrs["integrator"] == "BAOAB Langevin"


def test_values_in_xarray_equal_what_the_store_reads(demo_file: Path) -> None:
    ds = open_group(demo_file, "trajectory")
    with writebehind.open(demo_file, "r") as store:
        expected = store.trajectory.velocities.read()
    np.testing.assert_array_equal(ds["velocities"].values, expected.magnitude)


def test_pint_xarray_quantifies_the_units(demo_file: Path) -> None:
    pint_xarray = pytest.importorskip(
        "pint_xarray", reason="pint-xarray is not installed (pip install -e '.[test]')"
    )
    import pint

    # what importing pint_xarray does, undone by conftest after any earlier test that did it
    pint_xarray.setup_registry(pint.get_application_registry())

    quantified = open_group(demo_file, "energies").pint.quantify()
    temperature = quantified["temperature"].data
    assert isinstance(temperature, pint.Quantity)
    assert temperature.units == pint.get_application_registry().kelvin


# -- node.to_xarray() ------------------------------------------------------------------
def test_group_to_xarray_matches_open_dataset(demo_file: Path) -> None:
    from_file = open_group(demo_file, "energies")
    with writebehind.open(demo_file, "r") as store:
        from_store = store.energies.to_xarray()
    assert sorted(from_store.data_vars) == sorted(from_file.data_vars)
    for name in from_file.data_vars:
        assert from_store[name].dims == from_file[name].dims
        np.testing.assert_array_equal(from_store[name].values, from_file[name].values)
        assert from_store[name].attrs["units"] == from_file[name].attrs["units"]


def test_variable_to_xarray_is_a_data_array_with_units(demo_file: Path) -> None:
    with writebehind.open(demo_file, "r") as store:
        positions = store.trajectory.positions.to_xarray()
    assert isinstance(positions, xr.DataArray)
    assert positions.name == "positions"
    assert positions.dims == ("positions_entry", "positions_axis1", "positions_axis2")
    assert positions.attrs == {"units": "nanometer"}


def test_to_xarray_leaves_out_bookkeeping_attributes(demo_file: Path) -> None:
    with writebehind.open(demo_file, "r") as store:
        ds = store.trajectory.to_xarray()
    assert ds.attrs == {"integrator": "BAOAB Langevin", "frames_every_n_steps": 1}
    assert not any(k.startswith("writebehind_") for v in ds.data_vars.values() for k in v.attrs)


def test_to_xarray_gives_dict_records_as_dicts(demo_file: Path) -> None:
    with writebehind.open(demo_file, "r") as store:
        state = store.checkpoints.state.to_xarray()
    assert state.dims == ("state_entry",)
    assert [record["step"] for record in state.values] == [5, 10, 15, 20]


def test_to_xarray_sees_writes_still_pending(open_face: Any, nc_path: Path) -> None:
    # on the sync and the async face (tests/faces.py)
    with open_face(nc_path, "w") as store:
        for i in range(5):
            store.run.flag.append(i % 2 == 0)
        store.run.label.write("first")
        ds = store.run.to_xarray()
    assert ds["flag"].dtype == bool
    assert ds["flag"].values.tolist() == [True, False, True, False, True]
    assert ds["label"].dims == () and ds["label"].item() == "first"


def test_to_xarray_of_an_appendable_variable_without_entries_is_empty(tmp_path: Path) -> None:
    import netCDF4

    path = tmp_path / "empty.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("station", 2)
        ds.createVariable("temp", "f8", ("time", "station"))
    with writebehind.open(path, "r") as store:
        temp = store.temp.to_xarray()
    assert temp.dims == ("time", "station")
    assert temp.shape == (0, 2)


def test_to_xarray_of_nothing_raises_key_error(face_store: Any) -> None:
    face_store.a.b.write(1)
    with pytest.raises(KeyError, match="missing"):
        face_store.missing.to_xarray()


def test_to_xarray_of_a_foreign_file_keeps_its_dimension_names(tmp_path: Path) -> None:
    import netCDF4

    path = tmp_path / "foreign.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("station", 2)
        ds.createVariable("temp", "f4", ("time", "station"))[0:3] = np.ones((3, 2), "f4")
    with writebehind.open(path, "r") as store:
        temp = store.temp.to_xarray()
    assert temp.dims == ("time", "station")
    assert temp.shape == (3, 2)
