"""Code written for openmmtools.storage runs unchanged (pint instead of simtk units).

The first two sections port the behaviours checked by openmmtools' own
``test_storage_iodrivers.py`` and ``test_storage_interface.py`` to writebehind's API; the last
ones check what the legacy driver API adds on a write-behind store (drains, hand-over of the
file, errors).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pint
import pytest

from writebehind import (
    AsyncStorageInterface,
    NetCDFIODriver,
    ReadOnlyError,
    StorageInterface,
    StoreClosedError,
)

UREG = pint.get_application_registry()


def assert_same(got: Any, expected: Any) -> None:
    """Equal values of the same type: dicts key by key, quantities in the same units."""
    assert type(got) is type(expected) or (
        isinstance(got, pint.Quantity) and isinstance(expected, pint.Quantity)
    ), (type(got), type(expected))
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, pint.Quantity):
        assert got.units == expected.units
        np.testing.assert_array_equal(np.asarray(got.magnitude), np.asarray(expected.magnitude))
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    else:
        assert got == expected


def assert_entries(got: Any, expected: Any, count: int) -> None:
    """An appended variable read whole holds ``count`` entries equal to ``expected``.

    As the types table says: scalars come back as a 1-D array, quantities as one quantity
    of the stacked magnitudes, everything else as a list of entries of the written type.
    """
    if isinstance(expected, int | float):
        assert isinstance(got, np.ndarray)
        assert got.tolist() == [expected] * count
    elif isinstance(expected, np.ndarray):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, np.stack([expected] * count))
    elif isinstance(expected, pint.Quantity):
        assert got.units == expected.units
        np.testing.assert_array_equal(
            np.asarray(got.magnitude), np.stack([np.asarray(expected.magnitude)] * count)
        )
    else:
        assert isinstance(got, list)
        assert len(got) == count
        for entry in got:
            assert_same(entry, expected)


@contextmanager
def writer_blocked(store: StorageInterface) -> Iterator[threading.Event]:
    """Hold the store's writer on an event; released after the block (and by the caller)."""
    gate = threading.Event()
    store._core.engine.call("hold the writer", gate.wait)
    try:
        yield gate
    finally:
        gate.set()


def release_later(gate: threading.Event) -> threading.Timer:
    """Release ``gate`` from another thread shortly, so a draining call returns only then."""
    timer = threading.Timer(0.2, gate.set)
    timer.start()
    return timer


# -- ported from openmmtools/tests/test_storage_iodrivers.py -------------------------------
def test_get_directory_returns_the_groups_ncfile_holds(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    group2 = driver.get_directory("group1/group2")
    group1 = driver.get_directory("group1")
    ncfile = driver.ncfile
    assert isinstance(ncfile, netCDF4.Dataset)
    assert group1 is ncfile.groups["group1"]
    assert group2 is ncfile.groups["group1"].groups["group2"]
    driver.close()


def test_check_dimension_methods_create_the_named_dimensions(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    NetCDFIODriver.check_scalar_dimension(driver)
    NetCDFIODriver.check_iterable_dimension(driver, length=4)
    NetCDFIODriver.check_infinite_dimension(driver)
    dims = driver.ncfile.dimensions
    assert len(dims["scalar"]) == 1
    assert len(dims["iterable4"]) == 4
    assert dims["iteration"].isunlimited()
    driver.close()


def test_checking_an_existing_dimension_again_changes_nothing(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    driver.check_iterable_dimension(length=3)
    driver.check_iterable_dimension(length=3)
    driver.check_infinite_dimension("frames")
    driver.check_infinite_dimension("frames")
    assert sorted(driver.ncfile.dimensions) == ["frames", "iterable3"]
    driver.close()


def test_driver_add_metadata_sets_root_and_group_attributes(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    group1 = driver.get_directory("group1")
    driver.add_metadata("root_metadata", "IAm(G)Root!")
    driver.add_metadata("group_metadata", "group1_metadata", path="/group1")
    ncfile = driver.ncfile
    assert ncfile.getncattr("root_metadata") == "IAm(G)Root!"
    assert group1.getncattr("group_metadata") == "group1_metadata"
    driver.close()


CODEC_VALUES = {
    "int": 4,
    "float": 4.0,
    "str": "four point oh",
    "list": [4, 4, 4],
    "tuple": (4, 4, 4),
    "ndarray": np.array([4, 4.0, 4]),
    "quantity_scalar": 4 * UREG.kelvin,
    "quantity_list": [4, 4, 4] * UREG.kilojoule / UREG.mole,
    "quantity_array": np.array([4, 4, 4]) / UREG.nanosecond,
    "dict": {
        "count": 4,
        "ratio": 0.4,
        "name": "four",
        "repeated": [4, 4, 4],
        "temperature": 4 * UREG.kelvin,
        "box_vectors": (np.eye(3) * 4.0) * UREG.nanometer,
    },
}


@pytest.mark.parametrize("value", CODEC_VALUES.values(), ids=CODEC_VALUES.keys())
def test_storage_variable_writes_appends_and_reads_back_after_reopen(nc_path, value):
    driver = NetCDFIODriver(str(nc_path))
    type_key = UREG.Quantity if isinstance(value, pint.Quantity) else type(value)
    data_write = driver.create_storage_variable("data_write", type_key)
    data_append = driver.create_storage_variable("group1/data_append", type_key)
    for _ in range(2):  # the first call creates the variable, the second reuses it
        data_write.write(value)
        data_append.append(value)
    assert_same(data_write.read(), value)
    assert_entries(data_append.read(), value, 2)
    driver.close()

    driver = NetCDFIODriver(str(nc_path), access_mode="r")
    assert_same(driver.get_storage_variable("data_write").read(), value)
    assert_entries(driver.get_storage_variable("group1/data_append").read(), value, 2)
    driver.close()


# -- ported from openmmtools/tests/test_storage_interface.py -------------------------------
def test_store_metadata_is_visible_through_the_drivers_ncfile(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    store.add_metadata("name", "data")
    assert store.storage_driver.ncfile.getncattr("name") == "data"
    store.close()


def test_reading_a_variable_of_a_new_file_raises_keyerror(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    with pytest.raises(KeyError, match="var1"):
        store.var1.read()
    store.close()


def test_written_int_reads_back(nc_path):
    with StorageInterface(NetCDFIODriver(str(nc_path))) as store:
        store.four.write(4)
        assert store.four.read() == 4


def test_appended_arrays_read_back_as_entries(nc_path):
    with StorageInterface(NetCDFIODriver(str(nc_path))) as store:
        frame = np.eye(3) * 4.0
        store.four.append(frame)
        store.four.append(frame)
        frames = store.four.read()
    np.testing.assert_array_equal(frames[0], frame)
    np.testing.assert_array_equal(frames[1], frame)


def test_write_at_index_overwrites_one_appended_entry(nc_path):
    with StorageInterface(NetCDFIODriver(str(nc_path))) as store:
        for _ in range(3):
            store.four.append(4)
        store.four.write(5, at_index=1)
        assert store.four.read().tolist() == [4, 5, 4]


def test_quantity_reads_back_after_driver_close_and_a_new_store(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    store.four.write(4 * UREG.kelvin)
    store.storage_driver.close()
    del store
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    assert store.four.read() == 4 * UREG.kelvin
    store.close()


def test_nested_directories_are_groups_in_the_ncfile_and_after_reopen(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    store.dir0.dir1.dir2.var.write("four")
    target = store.storage_driver.ncfile
    for i in range(3):
        assert f"dir{i}" in target.groups
        target = target.groups[f"dir{i}"]
    store.storage_driver.close()
    del store
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    assert store.dir0.dir1.dir2.var.read() == "four"
    store.close()


def test_written_and_appended_variables_share_a_directory(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    data = [4.0, 4.0, 4.0]
    store.dir0.var0.write(data)
    store.dir0.var1.append(data)
    store.dir0.var1.append(data)
    store.storage_driver.close()
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    assert store.dir0.var0.read() == data
    assert store.dir0.var1.read() == [data, data]
    store.close()


def test_group_and_variable_metadata_are_attributes_in_the_ncfile(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    store.dir0.var1.write(4)
    store.dir0.add_metadata("AmIAGroup", "yes")
    store.dir0.var1.add_metadata("AmIAGroup", "no")
    dir0 = store.storage_driver.ncfile.groups["dir0"]
    assert dir0.getncattr("AmIAGroup") == "yes"
    assert dir0.variables["var1"].getncattr("AmIAGroup") == "no"
    store.close()


# -- the legacy driver on a write-behind store -------------------------------------------
def test_ncfile_waits_for_pending_appends(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    with writer_blocked(store) as gate:
        for step in range(5):
            store.traj.x.append(float(step))
        timer = release_later(gate)
        ncfile = store.storage_driver.ncfile
        assert ncfile.groups["traj"].variables["x"][:].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    timer.join()
    store.close()


def test_driver_close_from_user_code_writes_pending_entries_and_closes_the_store(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    with writer_blocked(store) as gate:
        for step in range(5):
            store.x.append(step)
        timer = release_later(gate)
        store.storage_driver.close()
    timer.join()
    assert store.closed
    with pytest.raises(StoreClosedError):
        store.x.append(5)
    store.close()  # closing the store again is allowed
    with StorageInterface(NetCDFIODriver(str(nc_path), "r")) as again:
        assert again.x.read().tolist() == [0, 1, 2, 3, 4]


def test_driver_close_writes_metadata_of_nodes_never_written(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    store.settings.add_metadata("integrator", "langevin")
    store.storage_driver.close()
    with StorageInterface(NetCDFIODriver(str(nc_path), "r")) as again:
        assert again.settings.read_metadata() == {"integrator": "langevin"}


def test_driver_sync_from_user_code_commits_earlier_appends(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    handle = store.x.append(1.0)
    store.storage_driver.sync()
    assert handle.is_committed()
    store.close()


def test_get_directory_waits_for_the_groups_the_store_enqueued(nc_path):
    with StorageInterface(NetCDFIODriver(str(nc_path))) as store:
        store.a.b.x.write(1)
        group = store.storage_driver.get_directory("a/b")
        assert group.path == "/a/b"
        assert "x" in group.variables


def test_get_directory_of_the_root_is_the_dataset(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    assert driver.get_directory("/") is driver.ncfile
    driver.close()


def test_group_made_by_get_directory_is_a_group_of_the_store(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with StorageInterface(driver) as store:
        driver.get_directory("a/b")
        assert "a/b" in store
        assert store.a.b.directory is not None
        store.a.b.x.write(3)
    with StorageInterface(NetCDFIODriver(str(nc_path), "r")) as again:
        assert again.a.b.x.read() == 3


def test_get_directory_without_create_raises_keyerror_for_a_missing_group(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(KeyError, match="nope"):
        driver.get_directory("nope", create=False)
    assert "nope" not in driver.get_directory("/").groups
    driver.close()


def test_get_directory_through_a_variable_raises_attributeerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    driver.create_storage_variable("x", int).write(1)
    with pytest.raises(AttributeError, match="variable"):
        driver.get_directory("x")
    with pytest.raises(AttributeError, match="variable"):
        driver.get_directory("x/y")
    driver.close()


def test_legacy_variable_and_store_node_share_one_variable(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with StorageInterface(driver) as store:
        legacy = driver.create_storage_variable("a/x", int)
        legacy.append(1)
        store.a.x.append(2)
        assert legacy.read().tolist() == [1, 2]
        assert store.a.x.read().tolist() == [1, 2]


def test_legacy_write_returns_before_the_disk_write(nc_path):
    store = StorageInterface(NetCDFIODriver(str(nc_path)))
    legacy = store.storage_driver.create_storage_variable("x", float)
    with writer_blocked(store) as gate:
        handle = legacy.append(1.0)  # returns although the writer is held
        assert not handle.is_committed()
        gate.set()
    assert legacy.read().tolist() == [1.0]
    store.close()


@pytest.mark.anyio
async def test_legacy_driver_api_works_on_a_driver_an_async_store_owns(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    store = AsyncStorageInterface(driver)
    async with store:
        await store.x.append(1)
        legacy = driver.create_storage_variable("x", int)
        legacy.append(2)  # blocks the event loop only while it checks and copies
        assert (await store.x.read()).tolist() == [1, 2]
        assert driver.ncfile.variables["x"][:].tolist() == [1, 2]
        driver.close()
        assert store.closed


def test_driver_used_alone_hands_its_file_to_a_store(nc_path):
    driver = NetCDFIODriver(str(nc_path), "w")
    driver.create_storage_variable("x", int).write(7)
    with StorageInterface(driver) as store:  # no "already used" error, nothing truncated
        assert store.x.read() == 7
        store.y.write(8)
    with StorageInterface(NetCDFIODriver(str(nc_path), "r")) as again:
        assert again.x.read() == 7
        assert again.y.read() == 8


def test_driver_used_again_after_close_does_not_truncate_its_file(nc_path):
    driver = NetCDFIODriver(str(nc_path), "w")
    driver.create_storage_variable("x", int).write(7)
    driver.close()
    assert driver.ncfile is None
    driver.create_storage_variable("y", int).write(8)
    assert driver.get_storage_variable("x").read() == 7
    driver.close()


def test_ncfile_is_none_while_no_file_is_open(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    assert driver.ncfile is None
    assert not nc_path.exists()


def test_file_name_and_access_mode_are_the_constructors(nc_path):
    driver = NetCDFIODriver(str(nc_path), "w")
    assert driver.file_name == str(nc_path)
    assert driver.access_mode == "w"


def test_get_storage_variable_of_a_missing_path_raises_keyerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(KeyError, match="missing"):
        driver.get_storage_variable("missing")
    driver.close()
    assert not nc_path.exists()  # looking something up never creates an empty file


def test_get_storage_variable_of_a_group_raises_keyerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    driver.get_directory("grp")
    with pytest.raises(KeyError, match="grp"):
        driver.get_storage_variable("grp")
    driver.close()


def test_get_storage_variable_returns_the_created_variable_before_its_first_write(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    created = driver.create_storage_variable("x", str)
    assert driver.get_storage_variable("/x/") is created
    driver.close()


def test_value_of_another_type_than_the_type_key_raises_typeerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    variable = driver.create_storage_variable("x", float)
    with pytest.raises(TypeError, match="float"):
        variable.write(4)
    with pytest.raises(TypeError, match="float"):
        variable.append("4")
    with pytest.raises(KeyError):
        variable.read()  # nothing was stored
    driver.close()


def test_list_type_key_accepts_any_iterable_as_openmmtools_did(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    variable = driver.create_storage_variable("x", list)
    variable.write((1, 2))
    assert variable.read() == (1, 2)
    with pytest.raises(TypeError, match="list"):
        variable.write(5)
    driver.close()


def test_quantity_type_key_accepts_quantities_of_any_registry(nc_path):
    other = pint.UnitRegistry()
    driver = NetCDFIODriver(str(nc_path))
    variable = driver.create_storage_variable("t", UREG.Quantity)
    variable.write(300 * other.kelvin)
    assert variable.read() == 300 * UREG.kelvin
    with pytest.raises(TypeError, match="Quantity"):
        variable.write(300.0)
    driver.close()


def test_unknown_type_key_raises_keyerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(KeyError, match="set"):
        driver.create_storage_variable("x", set)


def test_create_storage_variable_on_a_group_raises_attributeerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    driver.get_directory("grp")
    with pytest.raises(AttributeError, match="group"):
        driver.create_storage_variable("grp", int)
    driver.close()


def test_invalid_names_raise_valueerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(ValueError):
        driver.get_directory("bad\x01name")
    with pytest.raises(ValueError):
        driver.create_storage_variable("a/trailing space ", int)
    with pytest.raises(ValueError):
        driver.create_storage_variable("/", int)


def test_set_codec_raises_notimplementederror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(NotImplementedError, match="codec"):
        driver.set_codec(complex, object)


def test_iterable_dimension_length_must_be_a_non_negative_int(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(TypeError):
        driver.check_iterable_dimension(length=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        driver.check_iterable_dimension(length=-1)
    driver.close()


def test_iterable_dimension_of_length_zero_is_unlimited(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    driver.check_iterable_dimension()
    assert driver.ncfile.dimensions["iterable0"].isunlimited()
    driver.close()


def test_add_metadata_at_an_unknown_path_raises_keyerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    with pytest.raises(KeyError, match="nowhere"):
        driver.add_metadata("a", 1, path="nowhere")
    driver.close()


def test_metadata_of_a_variable_before_its_first_write_is_kept(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    variable = driver.create_storage_variable("x", int)
    driver.add_metadata("origin", "legacy", path="x")
    variable.add_metadata("step", 2)
    variable.append(1)
    assert variable.read_metadata() == {"origin": "legacy", "step": 2}
    assert driver.ncfile.variables["x"].getncattr("origin") == "legacy"
    driver.close()


def test_write_at_index_errors_match_openmmtools(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    variable = driver.create_storage_variable("x", int)
    with pytest.raises(OSError, match="does not exist"):
        variable.write(1, at_index=0)
    variable.append(1)
    with pytest.raises(ValueError, match="maximum length of the appended data of 1"):
        variable.write(1, at_index=1)
    driver.close()


def test_write_without_index_on_an_appended_variable_raises_valueerror(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    variable = driver.create_storage_variable("x", int)
    variable.append(1)
    with pytest.raises(ValueError, match="append"):
        variable.write(2)
    driver.close()


def test_read_only_driver_refuses_to_create_what_is_missing(nc_path):
    driver = NetCDFIODriver(str(nc_path))
    driver.check_scalar_dimension()
    driver.get_directory("grp")
    driver.close()
    reader = NetCDFIODriver(str(nc_path), "r")
    reader.check_scalar_dimension()  # present: nothing to create
    assert reader.get_directory("grp").name == "grp"
    with pytest.raises(ReadOnlyError):
        reader.check_infinite_dimension()
    with pytest.raises(ReadOnlyError):
        reader.get_directory("new")
    with pytest.raises(ReadOnlyError):
        reader.create_storage_variable("x", int).write(1)
    reader.close()


def test_missing_file_in_read_mode_raises_filenotfounderror(nc_path):
    driver = NetCDFIODriver(str(nc_path), "r")
    with pytest.raises(FileNotFoundError):
        driver.get_storage_variable("x")


def test_driver_used_alone_writes_everything_when_the_process_exits_without_close(nc_path):
    script = (
        "from writebehind import NetCDFIODriver\n"
        f"driver = NetCDFIODriver({str(nc_path)!r})\n"
        "positions = driver.create_storage_variable('traj/positions', list)\n"
        "for step in range(100):\n"
        "    positions.append([step, step])\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with StorageInterface(NetCDFIODriver(str(nc_path), "r")) as store:
        assert store.traj.positions.read() == [[step, step] for step in range(100)]


MIGRATION_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating.md"


def test_migration_guide_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", MIGRATION_GUIDE.read_text(), re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(MIGRATION_GUIDE), "exec"), {})
