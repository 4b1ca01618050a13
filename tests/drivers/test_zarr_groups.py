"""One store per group of a shared Zarr hierarchy: ``writebehind.open(target, group=...)``
and ``ens.zarr/replica-0`` (drivers/zarr.py, drivers/_zarr_lease.py, _targets.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

import writebehind
from writebehind import StoreInUseError
from writebehind._paths import split_zarr_target
from writebehind._targets import backend_for, is_zarr_target

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")

from writebehind.drivers.memory import MemoryBackend
from writebehind.drivers.zarr import ZarrBackend

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too


@pytest.fixture(params=["local", "s3"])
def hierarchy(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a shared hierarchy goes: a local ``.zarr`` directory, or a prefix on S3."""
    if request.param == "local":
        return str(tmp_path / "ens.zarr")
    return f"s3://{request.getfixturevalue('s3_bucket')}/runs/ens.zarr"


# -- which group a target names ------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "split"),
    [
        ("ens.zarr", ("ens.zarr", "")),
        ("ens.zarr/replica-0", ("ens.zarr", "replica-0")),
        ("/data/ens.zarr/a/b/", ("/data/ens.zarr", "a/b")),
        ("s3://bucket/runs/ens.zarr/replica-0", ("s3://bucket/runs/ens.zarr", "replica-0")),
        ("s3://bucket.zarr/run", ("s3://bucket.zarr/run", "")),  # a bucket is no hierarchy
        ("s3://bucket/prefix/run", ("s3://bucket/prefix/run", "")),
    ],
)
def test_a_path_through_a_zarr_directory_names_a_group(target: str, split: tuple[str, str]) -> None:
    assert split_zarr_target(target) == split


def test_a_path_through_a_zarr_directory_is_a_zarr_target() -> None:
    assert is_zarr_target("ens.zarr/replica-0")
    assert not is_zarr_target("runs/replica-0.nc")


def test_the_group_of_the_path_and_the_group_argument_add_up(tmp_path: Path) -> None:
    backend = ZarrBackend(str(tmp_path / "ens.zarr" / "a"), "w", group="b")
    assert backend.hierarchy == str(tmp_path / "ens.zarr") and backend.group == "a/b"


def test_a_group_name_netcdf_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid name"):
        writebehind.open(tmp_path / "ens.zarr", "w", group="a//b")


# -- writers of groups -----------------------------------------------------------------------
def test_writers_of_different_groups_write_one_hierarchy_at_once(hierarchy: str) -> None:
    stores = [writebehind.open(hierarchy, "w", group=f"replica-{i}") for i in range(3)]
    for step in range(5):
        for i, store in enumerate(stores):
            store.traj.x.append(np.full(2, 10 * i + step, dtype="f4"))
    for store in stores:
        store.close()
    with writebehind.open(hierarchy, "r") as whole:
        for i in range(3):
            got = whole[f"replica-{i}/traj/x"].read()
            np.testing.assert_array_equal(got[:, 0], 10 * i + np.arange(5))


def test_a_second_writer_of_the_same_group_is_refused(hierarchy: str) -> None:
    with writebehind.open(hierarchy, "w", group="replica-0") as first:
        first.x.append(1.0)
        first.flush()
        for mode in ("w", "a", None):
            with pytest.raises(StoreInUseError, match="another writer"):
                writebehind.open(f"{hierarchy}/replica-0", mode).x.append(2.0)
        first.x.append(3.0)
    with writebehind.open(hierarchy, "r", group="replica-0") as store:
        assert list(store.x.read()) == [1.0, 3.0]


def test_a_writer_of_the_whole_hierarchy_and_a_writer_of_a_group_exclude_each_other(
    hierarchy: str,
) -> None:
    with writebehind.open(hierarchy, "w", group="replica-0") as group_writer:
        group_writer.x.append(1.0)
        with pytest.raises(StoreInUseError, match="overlaps"):
            writebehind.open(hierarchy, "w")  # it would delete replica-0
        group_writer.x.append(2.0)
    with writebehind.open(hierarchy, "a") as whole:
        whole.y.append(1.0)
        with pytest.raises(StoreInUseError, match="overlaps"):
            writebehind.open(hierarchy, "a", group="replica-0")
    with writebehind.open(hierarchy, "r", group="replica-0") as store:
        assert list(store.x.read()) == [1.0, 2.0]


def test_writers_of_a_group_and_of_a_group_inside_it_exclude_each_other(
    hierarchy: str,
) -> None:
    with writebehind.open(hierarchy, "w", group="ens/replica-0") as inner:
        inner.x.append(1.0)
        with pytest.raises(StoreInUseError, match="overlaps"):
            writebehind.open(hierarchy, "w", group="ens")
        with writebehind.open(hierarchy, "w", group="ensemble") as sibling:  # a prefix only
            sibling.x.append(2.0)


def test_a_refused_writer_leaves_no_lease(hierarchy: str) -> None:
    with writebehind.open(hierarchy, "w", group="replica-0") as store:
        store.x.append(1.0)
        with pytest.raises(StoreInUseError):
            writebehind.open(hierarchy, "a")
    # had the refused writer of the hierarchy kept its lease, this would be refused
    with writebehind.open(hierarchy, "a", group="replica-0") as store:
        store.x.append(2.0)


def test_w_on_a_group_deletes_that_group_only(hierarchy: str) -> None:
    for group in ("replica-0", "replica-1"):
        with writebehind.open(hierarchy, "w", group=group) as store:
            store.x.append(1.0)
    with writebehind.open(hierarchy, "w", group="replica-0") as store:
        store.y.append(2.0)
    with writebehind.open(hierarchy, "r") as whole:
        assert list(whole["replica-1/x"].read()) == [1.0]
        assert "x" not in whole["replica-0"] and list(whole["replica-0/y"].read()) == [2.0]


@pytest.mark.parametrize("mode", ["a", "r"])
def test_a_missing_group_is_not_found(hierarchy: str, mode: str) -> None:
    with writebehind.open(hierarchy, "w", group="replica-0") as store:
        store.x.append(1.0)
    with pytest.raises(FileNotFoundError, match="No group 'replica-1'"):
        writebehind.open(hierarchy, mode, group="replica-1")


def test_xarray_opens_each_group_of_the_hierarchy(tmp_path: Path) -> None:
    xarray = pytest.importorskip("xarray")
    hierarchy = tmp_path / "ens.zarr"
    for i in range(2):
        with writebehind.open(hierarchy, "w", group=f"replica-{i}") as store:
            for step in range(3):
                store.traj.x.append(np.full(4, i + step, dtype="f8"))
    frames = [
        xarray.open_zarr(hierarchy, group=f"replica-{i}/traj", consolidated=False)["x"]
        for i in range(2)
    ]
    mean = xarray.concat(frames, dim="replica").mean("replica")
    np.testing.assert_array_equal(mean.values[:, 0], [0.5, 1.5, 2.5])


def test_open_async_takes_a_group(tmp_path: Path) -> None:
    async def main() -> list[float]:
        async with writebehind.open_async(tmp_path / "ens.zarr", "w", group="r0") as store:
            await store.x.append(1.0)
        async with writebehind.open_async(tmp_path / "ens.zarr", "r", group="r0") as store:
            return await store.x.read()

    assert anyio.run(main) == [1.0]


# -- where a group is refused ----------------------------------------------------------------
def test_a_group_of_a_netcdf_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NetCDF file, which has one writer"):
        writebehind.open(tmp_path / "run.nc", "w", group="replica-0")
    assert not (tmp_path / "run.nc").exists()


def test_a_group_of_an_icechunk_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="own branch"):
        writebehind.open(f"icechunk://{tmp_path}/repo", "w", group="replica-0")


def test_a_group_for_a_backend_object_is_refused() -> None:
    with pytest.raises(ValueError, match="give the group to the backend"):
        backend_for(MemoryBackend("m", "w"), group="replica-0")


def test_the_lease_of_a_group_whose_writer_is_gone_is_taken_over(tmp_path: Path) -> None:
    hierarchy = tmp_path / "ens.zarr"
    with writebehind.open(hierarchy, "w", group="replica-0") as store:
        store.x.append(1.0)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    record = {"owner": "dead", "pid": int(gone.stdout), "renewed": time.time(), "seconds": 60}
    lease = tmp_path / "ens.zarr.leases" / "replica-0.lease"
    lease.write_text(json.dumps({**record, "host": "another-host"}))
    with pytest.raises(StoreInUseError, match="another-host"):  # maybe alive: refused
        writebehind.open(hierarchy, "a", group="replica-0")
    lease.write_text(json.dumps({**record, "host": socket.gethostname()}))
    with writebehind.open(hierarchy, "a", group="replica-0") as store:
        store.x.append(2.0)
        assert list(store.x.read()) == [1.0, 2.0]
    assert not lease.exists()


def test_the_cli_inspects_the_hierarchy_and_reads_one_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from writebehind.cli import main

    hierarchy = tmp_path / "ens.zarr"
    for i in range(2):
        with writebehind.open(hierarchy, "w", group=f"replica-{i}") as store:
            store.x.append(float(i) + 0.5)
    assert main(["inspect", str(hierarchy)]) == 0
    listing = capsys.readouterr().out
    assert "replica-0/" in listing and "replica-1/" in listing
    assert main(["read", str(hierarchy / "replica-1"), "x"]) == 0
    assert "1.5" in capsys.readouterr().out
