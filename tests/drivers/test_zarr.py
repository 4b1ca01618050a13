"""The contract suite on the Zarr backend, on a local directory and on S3 (moto)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")

from writebehind.drivers.zarr import ZarrBackend

from .contract import DriverContract, MakeBackend


class TestZarrBackendLocal(DriverContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> MakeBackend:
        path = str(tmp_path / "contract.zarr")

        def make(mode: str | None) -> ZarrBackend:
            return ZarrBackend(path, mode)

        return make


class TestZarrBackendS3(DriverContract):
    @pytest.fixture
    def make_backend(self, s3_bucket: str) -> MakeBackend:
        url = f"s3://{s3_bucket}/runs/contract.zarr"

        def make(mode: str | None) -> ZarrBackend:
            return ZarrBackend(url, mode)

        return make
