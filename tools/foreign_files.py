"""Build NetCDF files as other programs write them, to test writebehind on files from elsewhere.

- :func:`write_amber_trajectory`: an AMBER trajectory following the AMBER NetCDF convention
  1.0 (https://ambermd.org/netcdf/nctraj.xhtml) as sander, pmemd and cpptraj write it: a
  64-bit-offset classic file, ``frame`` unlimited, char arrays (``spatial = "xyz"``,
  ``cell_angular = ["alpha", "beta ", "gamma"]``), units on every physical variable, and
  velocities packed with ``scale_factor = 20.455``.
- :func:`write_cf_climate`: a CF-1.8 climate model output (NetCDF-4): coordinate variables,
  ``time`` in "days since 1850-01-01", a temperature field with ``_FillValue`` and missing
  points, a precipitation in UDUNITS notation ("kg m-2 s-1"), a packed ``short`` sea level
  pressure, cell bounds, station names as a char array and a group.

Both fill their arrays with values computable from their indices, so a test can check every
number read back. Run ``python tools/foreign_files.py DIR`` to write both into DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import netCDF4
import numpy as np

AMBER_VELOCITY_SCALE = 20.455  # AMBER's time unit is 1/20.455 ps


def amber_coordinates(frame: int, atoms: int) -> np.ndarray:
    """The coordinates (angstrom) :func:`write_amber_trajectory` stores for ``frame``."""
    return (np.arange(atoms * 3, dtype=np.float32).reshape(atoms, 3) + 1000 * frame) / 8


def write_amber_trajectory(path: str | Path, frames: int = 12, atoms: int = 7) -> Path:
    """An AMBER NetCDF trajectory of ``frames`` frames of ``atoms`` atoms at ``path``."""
    path = Path(path)
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.Conventions = "AMBER"
        nc.ConventionVersion = "1.0"
        nc.application = "AMBER"
        nc.program = "sander"
        nc.programVersion = "22.0"
        nc.title = "default_name"
        nc.createDimension("frame", None)
        nc.createDimension("spatial", 3)
        nc.createDimension("atom", atoms)
        nc.createDimension("cell_spatial", 3)
        nc.createDimension("label", 5)
        nc.createDimension("cell_angular", 3)
        spatial = nc.createVariable("spatial", "S1", ("spatial",))
        spatial[:] = netCDF4.stringtochar(np.array(["xyz"], "S3"))[0]
        cell_spatial = nc.createVariable("cell_spatial", "S1", ("cell_spatial",))
        cell_spatial[:] = netCDF4.stringtochar(np.array(["abc"], "S3"))[0]
        cell_angular = nc.createVariable("cell_angular", "S1", ("cell_angular", "label"))
        cell_angular[:] = netCDF4.stringtochar(np.array(["alpha", "beta ", "gamma"], "S5"))
        time = nc.createVariable("time", "f4", ("frame",))
        time.units = "picosecond"
        coordinates = nc.createVariable("coordinates", "f4", ("frame", "atom", "spatial"))
        coordinates.units = "angstrom"
        cell_lengths = nc.createVariable("cell_lengths", "f8", ("frame", "cell_spatial"))
        cell_lengths.units = "angstrom"
        cell_angles = nc.createVariable("cell_angles", "f8", ("frame", "cell_angular"))
        cell_angles.units = "degree"
        velocities = nc.createVariable("velocities", "f4", ("frame", "atom", "spatial"))
        velocities.units = "angstrom/picosecond"
        velocities.scale_factor = np.float32(AMBER_VELOCITY_SCALE)
        velocities.set_auto_maskandscale(False)  # store the packed numbers as given
        for frame in range(frames):
            time[frame] = 2.0 * frame
            coordinates[frame] = amber_coordinates(frame, atoms)
            cell_lengths[frame] = [30.0 + frame, 31.0, 32.0]
            cell_angles[frame] = [90.0, 90.0, 109.5]
            # Packed: a velocity of `frame` angstrom/ps is stored as frame / 20.455.
            velocities[frame] = np.full((atoms, 3), frame / AMBER_VELOCITY_SCALE, np.float32)
    return path


CF_FILL = np.float32(1.0e20)


def cf_temperature(time: int, lat: int, lon: int) -> float:
    """The temperature (K) :func:`write_cf_climate` stores at an index (unless missing)."""
    return 250.0 + time + lat / 10 + lon / 100


def cf_is_missing(time: int, lat: int, lon: int) -> bool:
    return (time + lat + lon) % 7 == 0


def write_cf_climate(
    path: str | Path, times: int = 6, lats: int = 4, lons: int = 5, stations: int = 3
) -> Path:
    """A CF-1.8 NetCDF-4 climate file at ``path``."""
    path = Path(path)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.Conventions = "CF-1.8"
        nc.title = "a CF climate output, written with netCDF4 by hand"
        nc.institution = "nowhere"
        nc.history = "tools/foreign_files.py"
        nc.createDimension("time", None)
        nc.createDimension("lat", lats)
        nc.createDimension("lon", lons)
        nc.createDimension("bnds", 2)
        nc.createDimension("station", stations)
        nc.createDimension("name_strlen", 12)
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "days since 1850-01-01 00:00:00"
        time.calendar = "standard"
        time.standard_name = "time"
        time.bounds = "time_bnds"
        time_bnds = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-60, 60, lats)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(0, 350, lons)
        tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"), fill_value=CF_FILL)
        tas.units = "K"
        tas.standard_name = "air_temperature"
        tas.cell_methods = "time: mean"
        pr = nc.createVariable("pr", "f4", ("time", "lat", "lon"))
        pr.units = "kg m-2 s-1"  # UDUNITS notation, which pint does not parse
        pr.standard_name = "precipitation_flux"
        psl = nc.createVariable("psl", "i2", ("time", "lat", "lon"))
        psl.units = "Pa"
        psl.scale_factor = np.float32(2.0)
        psl.add_offset = np.float32(100000.0)
        station_name = nc.createVariable("station_name", "S1", ("station", "name_strlen"))
        station_name[:] = netCDF4.stringtochar(
            np.array([f"station-{i}" for i in range(stations)], "S12")
        )
        land = nc.createGroup("land")
        land.createDimension("soil_layer", 3)
        depth = land.createVariable("depth", "f4", ("soil_layer",))
        depth.units = "m"
        depth[:] = [0.1, 0.5, 1.5]
        tas.set_auto_maskandscale(False)
        psl.set_auto_maskandscale(False)
        for t in range(times):
            time[t] = 15.0 + 30 * t
            time_bnds[t] = [30.0 * t, 30.0 * (t + 1)]
            field = np.empty((lats, lons), np.float32)
            for i in range(lats):
                for j in range(lons):
                    missing = cf_is_missing(t, i, j)
                    field[i, j] = CF_FILL if missing else cf_temperature(t, i, j)
            tas[t] = field
            pr[t] = np.full((lats, lons), 1e-5 * (t + 1), np.float32)
            psl[t] = np.full((lats, lons), t, np.int16)  # 100000 + 2 * t Pa, packed
    return path


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    print(write_amber_trajectory(directory / "amber.nc"))
    print(write_cf_climate(directory / "cf_climate.nc"))
