"""The file: groups, dimensions, chunking, CF units; readable by ncdump and xarray."""

from __future__ import annotations

import shutil
import subprocess

import netCDF4
import numpy as np
import pytest

import writebehind
from writebehind.drivers.netcdf.backend import CHUNK_SLICE_BYTES, CHUNK_TARGET_BYTES


def test_groups_are_netcdf_groups(store, nc_path):
    store.traj.sub.x.write(1)
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        assert "traj" in ds.groups and "sub" in ds["traj"].groups
        assert "x" in ds["traj/sub"].variables


def test_appendable_variable_grows_along_its_own_unlimited_dimension(store, nc_path):
    for _ in range(3):
        store.traj.positions.append(np.zeros((10, 3)))
    store.traj.energy.append(1.0)
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        var = ds["traj/positions"]
        assert var.dimensions == ("positions_entry", "positions_axis1", "positions_axis2")
        assert ds["traj"].dimensions["positions_entry"].isunlimited()
        assert var.shape == (3, 10, 3)
        assert ds["traj/energy"].dimensions == ("energy_entry",)


def test_appendable_variable_chunk_holds_the_target_bytes_of_whole_entries_plus_two(store, nc_path):
    store.x.append(np.zeros((1000, 3)))  # 24 kB entries
    store.y.append(1.0)
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        chunks = ds["x"].chunking()
        scalar_chunks = ds["y"].chunking()
    assert chunks == [CHUNK_TARGET_BYTES // 24_000 + 2, 1000, 3]
    assert scalar_chunks == [CHUNK_TARGET_BYTES // 8 + 2]


def test_a_variable_of_one_entry_costs_at_most_64_kibibytes_of_file(tmp_path):
    """Issue 14's bound for short runs: at most 2x the raw bytes plus 64 KiB a variable."""
    path = tmp_path / "many.nc"
    with writebehind.open(path, "w") as store:
        for n in range(200):
            store[f"g{n // 50}/v{n}"].append(np.arange(8.0))
    raw = 200 * 64
    assert path.stat().st_size <= 2 * raw + 200 * 64 * 1024


def test_large_entries_are_split_into_chunks_of_at_most_the_slice_bytes(store, nc_path):
    store.x.append(np.zeros((100_000, 3)))  # 2.4 MB entries
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        chunks = ds["x"].chunking()
    assert chunks[0] == 1 and np.prod(chunks) * 8 <= CHUNK_SLICE_BYTES


def test_quantities_carry_cf_units_attribute(store, nc_path, ureg):
    store.v.append(1.0 * ureg.nanometer / ureg.picosecond)
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        units = ds["v"].getncattr("units")
    assert ureg.parse_units(units) == ureg.nanometer / ureg.picosecond


def test_bookkeeping_attributes_share_one_prefix(store, nc_path, ureg):
    store.x.append(1.0 * ureg.kelvin)
    store.d.write({"a": 1})
    store.close()
    with netCDF4.Dataset(nc_path) as ds:
        for name in ("x", "d"):
            attrs = ds[name].ncattrs()
            assert all(a.startswith("writebehind_") or a == "units" for a in attrs), attrs


def test_committed_length_attribute_is_written_on_flush(store, nc_path):
    for i in range(5):
        store.x.append(i)
    store.flush()
    with netCDF4.Dataset(nc_path) as ds:
        assert int(ds["x"].getncattr("writebehind_length")) == 5


def test_entries_past_committed_length_are_ignored_on_open(store, nc_path, reopen):
    for i in range(5):
        store.x.append(i)
    store.close()
    with netCDF4.Dataset(nc_path, "a") as ds:
        ds["x"][5:7] = [99, 99]  # rows a crash left behind, never acknowledged
    with reopen(nc_path, "a") as again:
        assert len(again.x) == 5
        again.x.append(5)
        assert again.x.read().tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.skipif(shutil.which("ncdump") is None, reason="ncdump (netcdf-bin) not installed")
def test_file_opens_in_ncdump(store, nc_path, ureg):
    store.traj.positions.append(np.zeros((4, 3)) * ureg.nanometer)
    store.traj.names.append("a")
    store.cfg.write({"a": 1})
    store.close()
    out = subprocess.run(
        ["ncdump", "-h", str(nc_path)], capture_output=True, text=True, check=True
    ).stdout
    assert "group: traj" in out and "positions(positions_entry" in out
    assert 'units = "nanometer"' in out


def test_file_opens_in_xarray_with_sensible_dims(store, nc_path, ureg):
    xr = pytest.importorskip(
        "xarray", reason="xarray is not installed (pip install -e '.[xarray]')"
    )
    for i in range(3):
        store.traj.positions.append(np.full((4, 3), i, dtype=np.float32) * ureg.nanometer)
        store.traj.energy.append(float(i))
    store.close()
    with xr.open_dataset(nc_path, group="traj") as ds:
        assert ds["positions"].dims == ("positions_entry", "positions_axis1", "positions_axis2")
        assert ds["positions"].attrs["units"] == "nanometer"
        np.testing.assert_array_equal(ds["energy"].values, [0.0, 1.0, 2.0])
