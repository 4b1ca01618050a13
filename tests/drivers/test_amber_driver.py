"""AmberDriver on existing trajectories: append modes, files other programs wrote, refusals."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import netCDF4
import numpy as np
import pint
import pytest

from writebehind import NetCDFIODriver, StorageInterface
from writebehind.drivers._netcdf3 import encode_header, parse_header
from writebehind.drivers.amber import AmberDriver

UREG = pint.get_application_registry()
ATOMS = 4


def append_frames(store: StorageInterface, first: int, count: int, box: bool = False) -> None:
    """Frames whose time and every coordinate are their index."""
    for i in range(first, first + count):
        store.time.append(np.float32(i) * UREG.picosecond)
        store.coordinates.append(np.full((ATOMS, 3), i, np.float32) * UREG.angstrom)
        if box:
            store.cell_lengths.append(np.full(3, 20.0) * UREG.angstrom)
            store.cell_angles.append(np.full(3, 90.0) * UREG.degree)


def frame_indexes(path: Path) -> list[float]:
    with netCDF4.Dataset(path) as ds:
        np.testing.assert_array_equal(ds["coordinates"][:, 0, 0], ds["time"][:])
        return ds["time"][:].tolist()


@pytest.mark.parametrize("mode", [None, "a"])
def test_appending_continues_after_the_last_frame(tmp_path, mode):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, box=False)) as store:
        append_frames(store, 0, 3)
    with StorageInterface(AmberDriver(path, mode, n_atoms=ATOMS, box=False)) as store:
        assert len(store.coordinates) == 3
        append_frames(store, 3, 2)
    assert frame_indexes(path) == [0, 1, 2, 3, 4]


def test_appending_takes_the_atoms_and_variables_from_the_file(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, box=True)) as store:
        append_frames(store, 0, 2, box=True)
    driver = AmberDriver(path)  # no n_atoms, no options: the file says
    with StorageInterface(driver) as store:
        assert driver.n_atoms == ATOMS
        assert set(driver.record_variables) == {
            "time",
            "coordinates",
            "cell_lengths",
            "cell_angles",
        }
        append_frames(store, 2, 1, box=True)
    assert frame_indexes(path) == [0, 1, 2]


def test_mode_w_replaces_the_trajectory(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, box=False)) as store:
        append_frames(store, 0, 3)
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, box=False)) as store:
        append_frames(store, 0, 1)
    assert frame_indexes(path) == [0]


def test_mode_none_creates_a_missing_file(tmp_path):
    with StorageInterface(AmberDriver(tmp_path / "t.nc", None, n_atoms=ATOMS)) as store:
        append_frames(store, 0, 1, box=True)
    assert frame_indexes(tmp_path / "t.nc") == [0]


def test_mode_a_needs_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such AMBER trajectory"):
        StorageInterface(AmberDriver(tmp_path / "t.nc", "a", n_atoms=ATOMS))


def test_creating_needs_the_atom_count(tmp_path):
    with pytest.raises(ValueError, match="n_atoms is needed"):
        StorageInterface(AmberDriver(tmp_path / "t.nc", "w"))


def test_mode_r_is_refused(tmp_path):
    with pytest.raises(ValueError, match="NetCDFIODriver"):
        AmberDriver(tmp_path / "t.nc", "r")


def test_appending_other_atoms_is_refused(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, box=False)) as store:
        append_frames(store, 0, 1)
    with pytest.raises(ValueError, match=f"holds frames of {ATOMS} atoms, not 5"):
        StorageInterface(AmberDriver(path, "a", n_atoms=5))


def test_appending_a_box_to_a_file_without_one_is_refused(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, box=False)) as store:
        append_frames(store, 0, 1)
    with pytest.raises(ValueError, match=r"has no box .* pass box=False"):
        StorageInterface(AmberDriver(path, "a", box=True))


def test_a_netcdf4_file_is_not_an_amber_trajectory(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(NetCDFIODriver(path, "w")) as store:
        store.x.append(1.0)
    with pytest.raises(ValueError, match=r"not an AMBER trajectory: a NetCDF-4 \(HDF5\) file"):
        StorageInterface(AmberDriver(path, "a"))


def test_a_netcdf3_file_of_another_convention_is_refused(tmp_path):
    path = tmp_path / "t.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.Conventions = "CF-1.8"
        ds.createDimension("frame", None)
    with pytest.raises(ValueError, match=r"is not an AMBER trajectory .*CF-1\.8"):
        StorageInterface(AmberDriver(path, "a"))


def test_a_truncated_header_is_refused(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS)) as store:
        append_frames(store, 0, 1, box=True)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="header is cut short"):
        StorageInterface(AmberDriver(path, "a"))


# -- files other programs wrote -------------------------------------------------------------
@pytest.mark.parametrize("data_model", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET"])
def test_appending_to_a_file_netcdf_c_wrote(tmp_path, data_model):
    path = tmp_path / "t.nc"
    with netCDF4.Dataset(path, "w", format=data_model) as ds:
        ds.Conventions, ds.ConventionVersion = "AMBER", "1.0"
        ds.setncattr("gain", np.float32(0.5))
        ds.createDimension("frame", None)
        ds.createDimension("spatial", 3)
        ds.createDimension("atom", ATOMS)
        ds.createVariable("time", "f4", ("frame",)).units = "picosecond"
        coordinates = ds.createVariable("coordinates", "f4", ("frame", "atom", "spatial"))
        coordinates.units = "angstrom"
        ds["time"][0:2] = [0, 1]
        coordinates[0:2] = np.arange(2, dtype=np.float32)[:, None, None] * np.ones((ATOMS, 3))
    header = path.read_bytes()[:4096]
    with StorageInterface(AmberDriver(path, "a")) as store:
        append_frames(store, 2, 2)
    assert frame_indexes(path) == [0, 1, 2, 3]
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == data_model and ds.gain == np.float32(0.5)
    assert path.read_bytes()[8 : len(header)] == header[8:]  # only numrecs changed


@pytest.mark.parametrize("data_model", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET"])
def test_a_parsed_header_encodes_to_the_same_bytes(tmp_path, data_model):
    path = tmp_path / "t.nc"
    with netCDF4.Dataset(path, "w", format=data_model) as ds:
        ds.setncatts({"Conventions": "AMBER", "gain": np.float32(0.5), "n": np.int16(3)})
        ds.setncattr("pair", np.array([1.5, 2.5]))
        ds.createDimension("frame", None)
        ds.createDimension("atom", ATOMS)
        ds.createVariable("time", "f4", ("frame",)).units = "picosecond"
        ds.createVariable("charges", "f8", ("atom",))
        ds["time"][0:3] = [0, 1, 2]
    raw = path.read_bytes()
    header = parse_header(raw)
    variables = [(v.name, v.dims, v.dtype, v.attrs, v.vsize, v.begin) for v in header.variables]
    encoded = encode_header(header.version, header.numrecs, header.dims, header.attrs, variables)
    assert encoded == raw[: header.size]


def test_appending_to_a_file_mdtraj_wrote(tmp_path):
    mdtraj_netcdf = pytest.importorskip("mdtraj.formats", reason="mdtraj is not installed")
    path = tmp_path / "t.nc"
    with mdtraj_netcdf.NetCDFTrajectoryFile(str(path), "w") as file:
        xyz = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, ATOMS, 3), np.float32)
        file.write(xyz, time=np.arange(3, dtype=np.float32), cell_lengths=np.ones((3, 3)) * 20,
                   cell_angles=np.ones((3, 3)) * 90)  # fmt: skip
    with StorageInterface(AmberDriver(path, "a", n_atoms=ATOMS)) as store:
        append_frames(store, 3, 2, box=True)
    with mdtraj_netcdf.NetCDFTrajectoryFile(str(path)) as file:
        xyz, time, lengths, _ = file.read()
    np.testing.assert_array_equal(time, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(xyz[:, 0, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(lengths[:, 0], [20] * 5)


def test_parsing_a_header_gives_back_what_the_driver_wrote(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=ATOMS, velocities=True)) as store:
        pass
    with StorageInterface(AmberDriver(path, "a")) as store:  # a continued file's header
        store.add_metadata("answer", 42)  # is rewritten (within the room left for it)
    header = parse_header(path.read_bytes())
    assert header.version == 2 and header.numrecs == 0
    assert header.dims["atom"] == ATOMS and header.dims["frame"] == 0
    assert header.attrs["Conventions"] == "AMBER" and header.attrs["answer"] == 42
    velocities = next(v for v in header.variables if v.name == "velocities")
    assert velocities.dims == ("frame", "atom", "spatial")
    assert velocities.attrs == {"units": "angstrom/picosecond"}


def test_frames_appended_after_the_last_flush_are_not_counted_after_a_kill(tmp_path):
    path = tmp_path / "t.nc"
    with StorageInterface(AmberDriver(path, "w", n_atoms=2, box=False)) as store:
        store.time.append(np.float32(0) * UREG.picosecond)
        store.coordinates.append(np.zeros((2, 3), np.float32) * UREG.angstrom)
    code = f"""
        import os, numpy as np, pint
        from writebehind import StorageInterface
        from writebehind.drivers.amber import AmberDriver
        u = pint.get_application_registry()
        store = StorageInterface(AmberDriver({str(path)!r}, "a"))
        for i in range(1, 5):
            store.time.append(np.float32(i) * u.picosecond)
            store.coordinates.append(np.full((2, 3), i, np.float32) * u.angstrom)
            if i == 2:
                store.flush(durable=True)
        os._exit(0)  # no close: as if killed
        """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True)
    assert frame_indexes(path) == [0, 1, 2]
