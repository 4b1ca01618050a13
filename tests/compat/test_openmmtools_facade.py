"""NetCDFIODriver is a facade that holds a backend; the engine only sees the backend."""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest

import writebehind
from writebehind import MemoryBackend, NetCDFBackend, NetCDFIODriver, StorageInterface
from writebehind._core import StoreCore
from writebehind._engine import Engine


def test_the_engine_sees_the_backend_and_the_store_reports_the_facade(nc_path: Path) -> None:
    driver = NetCDFIODriver(str(nc_path), "w")
    with StorageInterface(driver) as store:
        assert store.storage_driver is driver
        assert store._core.driver is driver.backend
        assert store._core.engine.driver is driver.backend


def test_nothing_of_the_store_is_set_on_the_backend(nc_path: Path) -> None:
    driver = NetCDFIODriver(str(nc_path), "w")
    with StorageInterface(driver) as store:
        store.x.append(1.0)
        store.flush()
        held = list(vars(driver.backend).values())
    kinds = (StoreCore, Engine, NetCDFIODriver, StorageInterface, weakref.ref)
    assert not [value for value in held if isinstance(value, kinds)]


def test_a_store_on_a_netcdf_backend_writes_the_file_a_facade_reads(nc_path: Path) -> None:
    with StorageInterface(NetCDFBackend(str(nc_path), "w")) as store:
        store.traj.x.append(2.0)
    driver = NetCDFIODriver(str(nc_path), "r")
    assert driver.get_storage_variable("traj/x").read().tolist() == [2.0]
    driver.close()


def test_the_facade_reports_the_backends_facts(nc_path: Path) -> None:
    driver = NetCDFIODriver(str(nc_path), "w", checksums=True)
    assert (driver.file_name, driver.access_mode, driver.read_only) == (str(nc_path), "w", False)
    assert driver.checksums and driver.recovery is None and not driver.is_open
    with StorageInterface(driver):
        assert driver.is_open and driver.structure_frozen == ""
    assert not driver.is_open


@pytest.mark.parametrize(
    "fact",
    [
        "file_name",
        "access_mode",
        "read_only",
        "is_open",
        "checksums",
        "recovery",
        "structure_frozen",
    ],
)
def test_the_backends_facts_cannot_be_set_on_the_facade(nc_path: Path, fact: str) -> None:
    driver = NetCDFIODriver(str(nc_path), "w")
    before = getattr(driver.backend, fact)
    with pytest.raises(AttributeError, match="backend"):
        setattr(driver, fact, "changed")
    assert getattr(driver, fact) == before


def test_a_subclass_of_the_facade_that_overrides_a_backend_method_is_refused() -> None:
    with pytest.raises(TypeError, match=r"subclass writebehind\.NetCDFBackend"):

        class Overriding(NetCDFIODriver):
            def write_entries(self, path: str, start: int, entries: object) -> None:
                pass


def test_a_subclass_of_the_facade_that_adds_methods_is_accepted(nc_path: Path) -> None:
    class Named(NetCDFIODriver):
        def label(self) -> str:
            return "run"

    with StorageInterface(Named(str(nc_path), "w")) as store:
        assert store.storage_driver.label() == "run"  # type: ignore[union-attr]


def test_a_backend_used_by_an_open_store_is_refused_to_a_second() -> None:
    backend = MemoryBackend()
    with StorageInterface(backend), pytest.raises(ValueError, match="already used"):
        StorageInterface(backend)


def test_a_backend_is_free_again_once_its_store_is_closed() -> None:
    backend = MemoryBackend()
    StorageInterface(backend).close()
    with StorageInterface(backend) as store:
        assert not store.closed


def test_a_store_rejects_what_is_neither_a_backend_nor_a_facade() -> None:
    with pytest.raises(TypeError, match="StorageIODriver"):
        StorageInterface("run.nc")  # type: ignore[arg-type]


def test_the_facades_sync_before_any_store_does_nothing(nc_path: Path) -> None:
    driver = NetCDFIODriver(str(nc_path))
    driver.sync()
    driver.close()
    assert not nc_path.exists()


def test_writebehind_open_hands_out_the_facade(nc_path: Path) -> None:
    with writebehind.open(nc_path, "w") as store:
        assert isinstance(store.storage_driver, NetCDFIODriver)


def test_a_backend_that_is_not_hashable_can_be_used() -> None:
    class Unhashable(MemoryBackend):
        __hash__ = None  # type: ignore[assignment]  # as a dataclass with eq=True

    backend = Unhashable()
    with StorageInterface(backend) as store:
        store.x.append(1.0)
    with StorageInterface(backend) as store:
        assert store.x.read() == [1.0]


class _NoScratch(MemoryBackend):
    """A backend with a rule of its own: no name starting with ``scratch``."""

    def check_name(self, name: object) -> str:
        checked = super().check_name(name)
        if checked.startswith("scratch"):
            raise ValueError(f"invalid name {checked!r}: this backend keeps no scratch")
        return checked


class _TrailingSpace(MemoryBackend):
    """A backend that holds names netCDF refuses (a trailing space)."""

    def check_name(self, name: object) -> str:
        if isinstance(name, str) and name.endswith(" "):
            return name
        return super().check_name(name)


def test_navigation_refuses_a_name_the_backend_cannot_hold() -> None:
    with StorageInterface(_NoScratch()) as store:
        with pytest.raises(ValueError, match="no scratch"):
            store.traj.scratch_1  # noqa: B018
        with pytest.raises(ValueError, match="no scratch"):
            store["traj/scratch_2"]
        assert "traj/scratch_3" not in store


def test_navigation_accepts_a_name_the_backend_holds_that_netcdf_does_not() -> None:
    with StorageInterface(_TrailingSpace()) as store:
        store["note "].write("kept")
        assert store["note "].read() == "kept"
    with pytest.raises(ValueError, match="white space"), StorageInterface(MemoryBackend()) as s:
        s["note "]
