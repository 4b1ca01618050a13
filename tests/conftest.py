from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pint
import pytest

import writebehind


@pytest.fixture
def nc_path(tmp_path: Path) -> Path:
    return tmp_path / "run.nc"


@pytest.fixture
def store(nc_path: Path) -> Iterator[writebehind.StorageInterface]:
    s = writebehind.StorageInterface(writebehind.NetCDFIODriver(str(nc_path), "w"))
    yield s
    s.close()


@pytest.fixture
def ureg() -> pint.UnitRegistry:
    return pint.get_application_registry()  # type: ignore[return-value]


def _reopen(path: Path, mode: str | None = "r") -> writebehind.StorageInterface:
    return writebehind.StorageInterface(writebehind.NetCDFIODriver(str(path), mode))


@pytest.fixture
def reopen():
    """``reopen(path, mode="r")``: a new store on a file written earlier in the test."""
    return _reopen
