from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pint
import pytest

import writebehind


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio (anyio's pytest plugin)."""
    return str(request.param)


@pytest.fixture
def nc_path(tmp_path: Path) -> Path:
    return tmp_path / "run.nc"


@pytest.fixture
def store(nc_path: Path) -> Iterator[writebehind.StorageInterface]:
    s = writebehind.StorageInterface(writebehind.NetCDFIODriver(str(nc_path), "w"))
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _application_registry_flags() -> Iterator[None]:
    """Keep one test's change of the application registry's flags out of the next tests.

    Importing pint_xarray sets ``force_ndarray_like`` on pint's application registry for the
    rest of the process, after which ``300 * ureg.kelvin`` has a 0-d array as magnitude and
    ``float32_array * ureg.nm`` a float64 one. A test that needs pint_xarray sets the
    registry up itself (``pint_xarray.setup_registry``); every other test sees pint's
    defaults, whatever ran before it.
    """
    registry = pint.get_application_registry().get()
    flags = registry.force_ndarray, registry.force_ndarray_like
    yield
    registry.force_ndarray, registry.force_ndarray_like = flags


@pytest.fixture
def ureg() -> pint.UnitRegistry:
    return pint.get_application_registry()  # type: ignore[return-value]


def _reopen(path: Path, mode: str | None = "r") -> writebehind.StorageInterface:
    return writebehind.StorageInterface(writebehind.NetCDFIODriver(str(path), mode))


@pytest.fixture
def reopen():
    """``reopen(path, mode="r")``: a new store on a file written earlier in the test."""
    return _reopen
