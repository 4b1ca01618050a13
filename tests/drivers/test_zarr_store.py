"""Stores on Zarr (a local directory and S3) and Icechunk: every value type, xarray, live
readers."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pint
import pytest

import writebehind

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too

UREG = pint.get_application_registry()

#: One value of every kind a store holds, and how it reads back (None: as written).
VALUES: dict[str, Any] = {
    "int": 7,
    "float": 2.5,
    "bool": True,
    "text": "résumé",
    "raw": b"\x00\x01",
    "items": [1, 2, 3],
    "pair": (1.0, 2.0),
    "mapping": {"a": 1, "b": [1.5, "x"]},
    "quantity": 3.0 * UREG.nanometer,
    "vector": np.arange(3, dtype="f8") * UREG.angstrom,
    **{f"array_{d}": np.arange(6, dtype=d).reshape(2, 3) for d in ["i1", "i2", "i4", "i8"]},
    **{f"array_{d}": np.arange(6, dtype=d).reshape(2, 3) for d in ["u1", "u2", "u4", "u8"]},
    **{f"array_{d}": np.linspace(0, 1, 6, dtype=d).reshape(2, 3) for d in ["f4", "f8"]},
    "array_bool": np.array([True, False]),
}


@pytest.fixture(params=["local", "s3", "icechunk"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A Zarr store's location: a local ``.zarr`` directory, a URL on the S3 server, or a
    local Icechunk repository."""
    if request.param == "local":
        return str(tmp_path / "run.zarr")
    if request.param == "icechunk":
        pytest.importorskip("icechunk", reason="needs the icechunk extra")
        return f"icechunk://{tmp_path}/repo"
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/runs/run.zarr"


def written(target: str | Path) -> dict[str, Any]:
    """Write every value of VALUES to ``target`` (fixed, and appended twice); read back."""
    write_values(target)
    return read_values(target)


def write_values(target: str | Path) -> None:
    with writebehind.open(target, "w") as store:
        for name, value in VALUES.items():
            store.fixed[name].write(value)
            store.appended[name].append(value)
            store.appended[name].append(value)


def read_values(target: str | Path) -> dict[str, Any]:
    with writebehind.open(target, "r") as store:
        return {
            path: store[path].read()
            for name in VALUES
            for path in (f"fixed/{name}", f"appended/{name}")
        }


def assert_same(got: Any, want: Any) -> None:
    """``got`` is ``want``: the same types (all the way down) and values."""
    assert type(got) is type(want)
    if isinstance(want, pint.Quantity):
        assert str(got.units) == str(want.units)
        assert_same(got.magnitude, want.magnitude)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype == object:
            for a, b in zip(got.reshape(-1), want.reshape(-1), strict=True):
                assert_same(a, b)
        else:
            np.testing.assert_array_equal(got, want)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert_same(a, b)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same(got[key], want[key])
    else:
        assert got == want


def test_every_value_type_reads_back_as_from_a_netcdf_file(target: str, tmp_path: Path) -> None:
    on_netcdf = written(tmp_path / "run.nc")
    on_zarr = written(target)
    assert list(on_zarr) == list(on_netcdf)
    for path, value in on_netcdf.items():
        assert_same(on_zarr[path], value)


def check_values(target: str, reference: str) -> None:
    """The store at ``target`` holds what VALUES read back as from a netCDF file."""
    on_netcdf = written(reference)
    on_zarr = read_values(target)
    assert list(on_zarr) == list(on_netcdf)
    for path, value in on_netcdf.items():
        assert_same(on_zarr[path], value)


#: Another interpreter with writebehind's test extras (on another zarr and Icechunk: .ci/run
#: sets the Python 3.11 one when it runs these tests on Python 3.12).
OTHER_PYTHON = os.environ.get("WRITEBEHIND_OTHER_PYTHON", "")


def on_other_python(function: str, *args: str) -> None:
    """Call ``function`` of this module with ``args`` on OTHER_PYTHON, on this source tree."""
    code = f"import sys, test_zarr_store as t; t.{function}(*sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(Path(writebehind.__file__).parents[1])}
    done = subprocess.run(
        [OTHER_PYTHON, "-c", code, *args],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"{function} on {OTHER_PYTHON}:\n{done.stderr[-3000:]}"


@pytest.mark.skipif(not OTHER_PYTHON, reason="WRITEBEHIND_OTHER_PYTHON is not set")
@pytest.mark.parametrize("kind", ["local", "icechunk"])
def test_a_store_written_on_the_other_python_reads_back_here(kind: str, tmp_path: Path) -> None:
    target = str(tmp_path / "run.zarr") if kind == "local" else f"icechunk://{tmp_path}/repo"
    on_other_python("write_values", target)
    check_values(target, str(tmp_path / "reference.nc"))


@pytest.mark.skipif(not OTHER_PYTHON, reason="WRITEBEHIND_OTHER_PYTHON is not set")
@pytest.mark.parametrize("kind", ["local", "icechunk"])
def test_a_store_written_here_reads_back_on_the_other_python(kind: str, tmp_path: Path) -> None:
    target = str(tmp_path / "run.zarr") if kind == "local" else f"icechunk://{tmp_path}/repo"
    write_values(target)
    on_other_python("check_values", target, str(tmp_path / "reference.nc"))


def test_metadata_reads_back_after_reopening(target: str) -> None:
    metadata = {"title": "run", "steps": 10, "dt": 0.002, "ok": True, "ids": [1, 2]}
    with writebehind.open(target, "w") as store:
        for name, value in metadata.items():
            store.traj.add_metadata(name, value)
        store.traj.x.append(1)
    with writebehind.open(target, "r") as store:
        assert store.traj.read_metadata() == metadata


def test_xarray_opens_a_group_with_its_dims_and_units(tmp_path: Path) -> None:
    xarray = pytest.importorskip(
        "xarray", reason="xarray is not installed (pip install -e '.[xarray]')"
    )
    path = tmp_path / "run.zarr"
    with writebehind.open(path, "w") as store:
        for i in range(4):
            store.traj.positions.append(np.full((5, 3), i, dtype="f4") * UREG.nanometer)
        store.traj.box.write(np.eye(3) * UREG.nanometer)
    dataset = xarray.open_zarr(path, group="traj", consolidated=False)
    positions = dataset["positions"]
    assert positions.dims == ("positions_entry", "positions_axis1", "positions_axis2")
    assert positions.shape == (4, 5, 3) and positions.attrs["units"] == "nanometer"
    assert dataset["box"].dims == ("box_axis0", "box_axis1")
    np.testing.assert_array_equal(positions.values[:, 0, 0], [0, 1, 2, 3])


@pytest.mark.parametrize(
    ("reader", "where"),
    [
        ("writebehind", "local"),
        ("xarray", "local"),
        ("writebehind", "s3"),
        ("writebehind", "icechunk"),
    ],
)
def test_a_live_reader_sees_a_prefix_of_written_entries(
    request: pytest.FixtureRequest, tmp_path: Path, reader: str, where: str
) -> None:
    # Entry i is filled with i + 1: a row of zeros (the fill value) would be a row the
    # reader saw before it was written.
    xarray = (
        pytest.importorskip("xarray", reason="xarray is not installed (pip install -e '.[xarray]')")
        if reader == "xarray"
        else None
    )
    path: str | Path = tmp_path / "live.zarr"
    if where == "s3":
        path = f"s3://{request.getfixturevalue('s3_bucket')}/live.zarr"
    if where == "icechunk":
        pytest.importorskip("icechunk", reason="needs the icechunk extra")
        path = f"icechunk://{tmp_path}/live"
    with writebehind.open(path, "w") as store:
        store.x.append(np.full(64, 1.0))
    done = threading.Event()

    def write() -> None:
        try:
            with writebehind.open(path, "a") as store:
                for i in range(1, 600):
                    store.x.append(np.full(64, i + 1.0))
                    if i % 50 == 0:
                        store.flush()
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = [0]
    while not done.is_set():
        if reader == "writebehind":
            with writebehind.open(path, "r") as store:
                got = store.x.read()
        else:
            got = xarray.open_zarr(path, consolidated=False)["x"].values
        rows = len(got)
        assert rows >= seen[-1]
        np.testing.assert_array_equal(np.asarray(got)[:, 0], np.arange(1, rows + 1))
        seen.append(rows)
    writer.join()
    with writebehind.open(path, "r") as store:
        assert len(store.x.read()) == 600  # the writer finished
    assert len(set(seen)) > 2  # it saw the store grow, not only its start and end
