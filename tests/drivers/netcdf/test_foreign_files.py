"""Files from elsewhere: an AMBER trajectory and a CF climate file (issue 7, point 2).

Both are written with netCDF4 by ``tools/foreign_files.py`` following their conventions
(AMBER NetCDF 1.0: a netCDF-3 file with char arrays and packed velocities; CF-1.8: fill
values, UDUNITS units, packed shorts, groups). writebehind opens them, reads numbers as
arrays, char arrays and strings as str, quantities where ``units`` parses in pint, appends
where the layout allows and refuses clearly, at the call, where it does not.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pint
import pytest

import writebehind

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import foreign_files as foreign

pytestmark = pytest.mark.timeout(30)

FRAMES, ATOMS = 12, 7
UREG = pint.get_application_registry()


@pytest.fixture(scope="module")
def amber_original(tmp_path_factory) -> Path:
    return foreign.write_amber_trajectory(
        tmp_path_factory.mktemp("amber") / "amber.nc", FRAMES, ATOMS
    )


@pytest.fixture(scope="module")
def cf_original(tmp_path_factory) -> Path:
    return foreign.write_cf_climate(tmp_path_factory.mktemp("cf") / "cf.nc")


@pytest.fixture
def amber(amber_original, tmp_path) -> Path:
    return Path(shutil.copyfile(amber_original, tmp_path / "amber.nc"))


@pytest.fixture
def cf(cf_original, tmp_path) -> Path:
    return Path(shutil.copyfile(cf_original, tmp_path / "cf.nc"))


# -- AMBER: reading --------------------------------------------------------------------
def test_amber_trajectory_opens_and_lists_its_variables(amber):
    with writebehind.open(amber, "r") as store:
        assert set(store) == {
            "spatial",
            "cell_spatial",
            "cell_angular",
            "time",
            "coordinates",
            "cell_lengths",
            "cell_angles",
            "velocities",
        }


def test_amber_coordinates_read_as_quantity_in_angstrom(amber):
    with writebehind.open(amber, "r") as store:
        coordinates = store.coordinates.read()
    assert coordinates.units == UREG.angstrom
    assert coordinates.magnitude.dtype == np.float32
    expected = np.stack([foreign.amber_coordinates(f, ATOMS) for f in range(FRAMES)])
    np.testing.assert_array_equal(coordinates.magnitude, expected)


def test_amber_time_and_cell_read_as_quantities(amber):
    with writebehind.open(amber, "r") as store:
        time = store.time.read()
        lengths = store.cell_lengths.read()
        angles = store.cell_angles.read()
    assert time.units == UREG.picosecond and time.magnitude.tolist() == [2.0 * f for f in range(12)]
    assert lengths.units == UREG.angstrom and lengths.magnitude[3].tolist() == [33.0, 31.0, 32.0]
    assert angles.units == UREG.degree and angles.magnitude[0].tolist() == [90.0, 90.0, 109.5]


def test_amber_char_arrays_read_as_str(amber):
    with writebehind.open(amber, "r") as store:
        assert store.spatial.read() == "xyz"
        assert store.cell_spatial.read() == "abc"
        assert store.cell_angular.read().tolist() == ["alpha", "beta ", "gamma"]


def test_amber_packed_velocities_read_unpacked(amber):
    with writebehind.open(amber, "r") as store:
        velocities = store.velocities.read()
    assert velocities.units == UREG.angstrom / UREG.picosecond
    np.testing.assert_allclose(velocities.magnitude[:, 0, 0], np.arange(FRAMES), rtol=1e-6)


def test_amber_global_attributes_read_as_metadata(amber):
    with writebehind.open(amber, "r") as store:
        metadata = store.read_metadata()
    assert metadata["Conventions"] == "AMBER" and metadata["ConventionVersion"] == "1.0"


def test_amber_single_frames_and_slices_read(amber):
    with writebehind.open(amber, "r") as store:
        assert len(store.coordinates) == FRAMES
        frame = store.coordinates.read(5)
        np.testing.assert_array_equal(frame.magnitude, foreign.amber_coordinates(5, ATOMS))
        assert store.time.read(-1) == np.float32(22.0) * UREG.picosecond
        assert store.coordinates.read(slice(2, 8, 3)).magnitude.shape == (2, ATOMS, 3)


# -- AMBER: appending ------------------------------------------------------------------
def test_amber_appending_a_frame_converts_units_and_other_programs_read_it(amber):
    new_frame = foreign.amber_coordinates(FRAMES, ATOMS)
    with writebehind.open(amber, "a") as store:
        store.coordinates.append((new_frame / 10) * UREG.nanometer)  # nm in, angstrom stored
        store.time.append(np.float32(2.0 * FRAMES) * UREG.picosecond)
        store.cell_lengths.append(np.array([42.0, 31.0, 32.0]) * UREG.angstrom)
        store.cell_angles.append(np.array([90.0, 90.0, 109.5]) * UREG.degree)
    with netCDF4.Dataset(amber) as plain:  # what VMD, cpptraj or MDTraj would see
        assert plain.dimensions["frame"].size == FRAMES + 1
        np.testing.assert_allclose(plain["coordinates"][FRAMES], new_frame, rtol=1e-6)
        assert plain["time"][FRAMES] == 2.0 * FRAMES
        assert plain.file_format == "NETCDF3_64BIT_OFFSET"
    with writebehind.open(amber, "r") as store:
        old = store.coordinates.read(slice(0, FRAMES)).magnitude
        expected = np.stack([foreign.amber_coordinates(f, ATOMS) for f in range(FRAMES)])
        np.testing.assert_array_equal(old, expected)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda s: s.velocities.append(np.ones((ATOMS, 3), np.float32) * UREG("Å/ps")), "packed"),
        (lambda s: s.spatial.write("abc"), "char array"),
        (lambda s: s.coordinates.append(np.ones((ATOMS, 3), np.float32)), "without units"),
        (lambda s: s.coordinates.append(np.ones((ATOMS, 4), np.float32) * UREG.Å), "shape"),
        (lambda s: s.coordinates.append(np.ones((ATOMS, 3)) * UREG.second), "Cannot convert"),
        (lambda s: s.time.append(1.0 * UREG.picosecond), "without loss"),
        (lambda s: s.spatial.append("x"), "fixed"),
        (lambda s: s.solvent.append(1.0), "NETCDF3_64BIT_OFFSET"),
        (lambda s: s.restraints.energy.write(1.0), "creates groups and variables only"),
        (lambda s: s.new_group.add_metadata("a", 1), "NETCDF3"),
    ],
    ids=[
        "packed-velocities",
        "char-array",
        "no-units",
        "wrong-shape",
        "wrong-dimensionality",
        "lossy-dtype",
        "append-to-fixed",
        "new-variable-in-netcdf3",
        "new-group-in-netcdf3",
        "metadata-on-new-node-in-netcdf3",
    ],
)
def test_amber_writes_the_layout_cannot_take_are_refused_at_the_call(amber, call, match):
    with writebehind.open(amber, "a") as store:
        before = store.stats().operations_enqueued
        with pytest.raises((TypeError, ValueError), match=match):
            call(store)
        assert store.stats().operations_enqueued == before
        store.flush()  # the store is still usable
    with netCDF4.Dataset(amber) as plain:
        assert plain.dimensions["frame"].size == FRAMES


# -- CF climate file ---------------------------------------------------------------------
def test_cf_file_opens_with_its_group(cf):
    with writebehind.open(cf, "r") as store:
        assert {"time", "time_bnds", "lat", "lon", "tas", "pr", "psl", "land"} <= set(store)
        depth = store.land.depth.read()
    assert depth.units == UREG.meter and depth.magnitude.tolist() == pytest.approx([0.1, 0.5, 1.5])


def test_cf_temperature_reads_as_kelvin_with_fill_values_as_stored(cf):
    with writebehind.open(cf, "r") as store:
        tas = store.tas.read()
        fill = store.tas.read_metadata()["_FillValue"]
    assert tas.units == UREG.kelvin
    field = tas.magnitude
    for index in np.ndindex(field.shape):
        if foreign.cf_is_missing(*index):
            assert field[index] == fill == foreign.CF_FILL  # not masked: see failure-modes
        else:
            assert field[index] == pytest.approx(foreign.cf_temperature(*index))


def test_cf_units_pint_cannot_parse_read_as_plain_arrays_with_units_in_metadata(cf):
    with writebehind.open(cf, "r") as store:
        pr, time, lat = store.pr.read(), store.time.read(), store.lat.read()
        assert store.pr.read_metadata()["units"] == "kg m-2 s-1"
        assert store.time.read_metadata()["calendar"] == "standard"
    assert type(pr) is np.ndarray and type(time) is np.ndarray and type(lat) is np.ndarray
    assert time.tolist() == [15.0 + 30 * t for t in range(6)]


def test_cf_packed_shorts_read_unpacked(cf):
    with writebehind.open(cf, "r") as store:
        psl = store.psl.read()
    assert psl.units == UREG.pascal
    np.testing.assert_allclose(psl.magnitude[:, 0, 0], 100000.0 + 2.0 * np.arange(6))


def test_cf_station_names_read_as_str(cf):
    with writebehind.open(cf, "r") as store:
        assert store.station_name.read().tolist() == ["station-0", "station-1", "station-2"]


def test_cf_appending_a_time_step_is_read_by_netcdf4_and_xarray(cf):
    xarray = pytest.importorskip(
        "xarray", reason="xarray is not installed (pip install -e '.[xarray]')"
    )
    field = np.full((4, 5), 300.0, np.float32)
    with writebehind.open(cf, "a") as store:
        store.time.append(195.0)
        store.time_bnds.append(np.array([180.0, 210.0]))
        store.tas.append(field * UREG.kelvin)
        store.pr.append(np.full((4, 5), 7e-5, np.float32))
        store.notes.write("appended by writebehind")  # a new variable: NETCDF4 allows it
    with netCDF4.Dataset(cf) as plain:
        assert plain.dimensions["time"].size == 7
        np.testing.assert_array_equal(plain["tas"][6], field)
    with xarray.open_dataset(cf) as dataset:
        assert dataset.tas.shape == (7, 4, 5)
        assert float(dataset.tas[6, 0, 0]) == 300.0
        assert np.isnan(float(dataset.tas[0, 0, 0]))  # the fill value, masked by xarray


def test_cf_packed_variable_refuses_appends(cf):
    with writebehind.open(cf, "a") as store, pytest.raises(TypeError, match="packed"):
        store.psl.append(np.zeros((4, 5)) * UREG.pascal)
