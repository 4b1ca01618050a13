"""The contract suite on the NetCDF backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from writebehind.drivers.netcdf import NetCDFBackend

from .contract import DriverContract, MakeBackend


class TestNetCDFBackend(DriverContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> MakeBackend:
        path = str(tmp_path / "contract.nc")

        def make(mode: str | None) -> NetCDFBackend:
            return NetCDFBackend(path, mode)

        return make
