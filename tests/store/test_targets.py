"""Which backend a target names (writebehind._targets), for open, open_async and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

import writebehind
from writebehind._targets import backend_class_for, backend_for, is_zarr_target
from writebehind.drivers.memory import MemoryBackend
from writebehind.drivers.netcdf import NetCDFBackend

zarr_backend = pytest.importorskip("writebehind.drivers.zarr", reason="needs the zarr extra")

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too


@pytest.mark.parametrize(
    "target", ["run.zarr", "run.zarr/", "/data/run.zarr", "s3://bucket/run.zarr", "gs://b/x"]
)
def test_a_zarr_path_or_a_url_names_a_zarr_store(target: str) -> None:
    assert is_zarr_target(target)


@pytest.mark.parametrize(
    "target",
    ["run.nc", "run.zarr.nc", "zarr", "file:///tmp/run.nc", "ens.zarr/seg.nc", "a.zarr/b/c.h5"],
)
def test_other_paths_name_netcdf_files(target: str) -> None:
    assert not is_zarr_target(target)


@pytest.mark.parametrize("target", ["ens.zarr/replica-0", "s3://bucket/ens.zarr/replica-0"])
def test_a_path_through_a_zarr_directory_names_a_zarr_group(target: str) -> None:
    assert is_zarr_target(target)


def test_a_zarr_path_gets_the_zarr_backend(tmp_path: Path) -> None:
    backend = backend_for(tmp_path / "run.zarr", "w")
    assert isinstance(backend, zarr_backend.ZarrBackend) and backend.access_mode == "w"


def test_a_plain_path_gets_the_netcdf_driver(tmp_path: Path) -> None:
    assert isinstance(backend_for(tmp_path / "run.nc", "a"), writebehind.NetCDFIODriver)


def test_a_backend_is_used_as_it_is() -> None:
    backend = MemoryBackend("m", "w")
    assert backend_for(backend) is backend
    assert backend_for(backend, "w") is backend


def test_a_mode_other_than_the_backends_own_is_refused() -> None:
    with pytest.raises(ValueError, match="differs from the backend's own"):
        backend_for(MemoryBackend("m", "w"), "r")


def test_checksums_on_a_zarr_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checksums=True is for NetCDF"):
        backend_for(tmp_path / "run.zarr", checksums=True)


def test_storage_options_on_a_netcdf_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage_options are for object storage"):
        backend_for(tmp_path / "run.nc", storage_options={"region": "x"})


def test_open_writes_a_zarr_store_for_a_zarr_path(tmp_path: Path) -> None:
    with writebehind.open(tmp_path / "run.zarr", "w") as store:
        store.x.append(1.0)
    assert json.loads((tmp_path / "run.zarr" / "x" / "zarr.json").read_text())["shape"] == [1]


def test_open_async_writes_a_zarr_store_for_a_zarr_path(tmp_path: Path) -> None:
    async def main() -> list[float]:
        async with writebehind.open_async(tmp_path / "run.zarr", "w") as store:
            await store.x.append(1.0)
        async with writebehind.open_async(tmp_path / "run.zarr", "r") as store:
            return await store.x.read()

    assert anyio.run(main) == [1.0]


def test_the_cli_inspects_and_reads_a_zarr_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from writebehind.cli import main

    with writebehind.open(tmp_path / "run.zarr", "w") as store:
        store.traj.x.append(2.5)
    assert main(["inspect", str(tmp_path / "run.zarr")]) == 0
    assert "traj/" in capsys.readouterr().out
    assert main(["read", str(tmp_path / "run.zarr"), "traj/x"]) == 0
    assert "2.5" in capsys.readouterr().out


def test_the_cli_reports_a_url_that_holds_no_store(
    s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from writebehind.cli import main

    assert main(["inspect", f"s3://{s3_bucket}/nothing.zarr"]) == 1
    assert "No Zarr store" in capsys.readouterr().err


# -- recovery, asked of the backend a target names -------------------------------------------
def test_a_plain_path_names_the_netcdf_backend_class() -> None:
    assert backend_class_for("run.nc") is NetCDFBackend


def test_a_zarr_path_names_the_zarr_backend_class() -> None:
    assert backend_class_for("s3://bucket/run.zarr") is zarr_backend.ZarrBackend


def test_recover_asks_the_netcdf_backend_for_a_plain_path(tmp_path: Path) -> None:
    with writebehind.open(tmp_path / "run.nc", "w") as store:
        store.x.append(1.0)
    report = writebehind.recover(tmp_path / "run.nc")
    assert isinstance(report, writebehind.RecoveryReport) and report.clean


def test_recover_of_a_zarr_store_has_nothing_to_do(tmp_path: Path) -> None:
    with writebehind.open(tmp_path / "run.zarr", "w") as store:
        store.x.append(1.0)
    assert writebehind.recover(tmp_path / "run.zarr") is None


def test_a_backend_that_never_recovers_returns_none() -> None:
    assert MemoryBackend.recover("m", force=True) is None


def test_the_cli_says_a_zarr_store_needs_no_recovery(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from writebehind.cli import main

    assert main(["recover", str(tmp_path / "run.zarr")]) == 0
    assert capsys.readouterr().out == (
        f"{tmp_path / 'run.zarr'}: a Zarr store needs no recovery: each array's shape is its "
        "committed length, written after its chunks\n"
    )
