"""The backend contract: what every ``StorageIODriver`` must do, as tests.

A backend is proven by one subclass of :class:`DriverContract` that says how to make it
(``make_backend``), as zarr-python's ``StoreTests`` is subclassed once per store: see
``test_memory.py`` and ``test_netcdf.py``. Each test is one promise of
``writebehind.drivers.base``; the engine relies on nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind._bookkeeping import ATTR_PREFIX, LENGTH_ATTR
from writebehind.codecs.base import Layout
from writebehind.drivers.base import StorageIODriver

F8 = Layout("numeric", np.dtype("f8"), (2, 3))
I4 = Layout("numeric", np.dtype("i4"), ())
STRING = Layout("string", np.dtype(object), ())
BYTES = Layout("bytes", np.dtype(object), ())

HUGE = Layout("numeric", np.dtype("f8"), (10**6,))  # an entry of 8 MB
LAYOUTS = [F8, I4, STRING, BYTES, HUGE]

MakeBackend = Callable[..., StorageIODriver]


def rows(start: int, count: int) -> np.ndarray[Any, Any]:
    """``count`` entries of layout F8, each filled with its index."""
    out = np.empty((count, 2, 3))
    for i in range(count):
        out[i] = start + i
    return out


def user_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` without writebehind's bookkeeping (a backend may keep some of its own)."""
    return {name: value for name, value in attrs.items() if not name.startswith(ATTR_PREFIX)}


class DriverContract:
    """The shared suite; a subclass defines the ``make_backend`` fixture."""

    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        """``make_backend(mode)``: a new backend object on the same storage each call."""
        raise NotImplementedError

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> Iterator[StorageIODriver]:
        """A backend opened in ``'w'``, closed after the test."""
        driver = make_backend("w")
        driver.open()
        yield driver
        driver.close()

    def reopened(self, make_backend: MakeBackend, mode: str | None) -> StorageIODriver:
        """A new backend on the storage, opened and scanned (as the engine does)."""
        driver = make_backend(mode)
        driver.open()
        list(driver.scan())
        return driver

    # -- lifecycle ---------------------------------------------------------------------
    @pytest.mark.parametrize("mode", ["a", "r"])
    def test_opening_storage_that_does_not_exist_raises_file_not_found(
        self, make_backend: MakeBackend, mode: str
    ) -> None:
        with pytest.raises(FileNotFoundError):
            make_backend(mode).open()

    def test_opening_without_a_mode_creates_nothing_until_a_write(
        self, make_backend: MakeBackend
    ) -> None:
        driver = make_backend(None)
        driver.open()
        assert list(driver.scan()) == []
        assert driver.root_attrs() == {}
        driver.close()
        with pytest.raises(FileNotFoundError):
            make_backend("r").open()

    def test_an_unknown_mode_is_refused(self, make_backend: MakeBackend) -> None:
        with pytest.raises(ValueError, match="access_mode"):
            make_backend("x")

    def test_closing_twice_is_allowed(self, backend: StorageIODriver) -> None:
        backend.close()
        backend.close()

    def test_what_was_written_is_there_after_reopening(
        self, backend: StorageIODriver, make_backend: MakeBackend
    ) -> None:
        backend.create_group("g")
        backend.create_variable("g/x", F8, appendable=True)
        backend.write_entries("g/x", 0, rows(0, 3))
        backend.close()
        for mode in ("a", "r", None):
            again = self.reopened(make_backend, mode)
            np.testing.assert_array_equal(again.read_entries("g/x", 0, 3), rows(0, 3))
            again.close()

    def test_what_was_written_can_be_added_to_after_reopening_in_a(
        self, backend: StorageIODriver, make_backend: MakeBackend
    ) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 2))
        backend.commit_lengths({"x": 2}, durable=False)
        backend.close()
        again = self.reopened(make_backend, "a")
        again.write_entries("x", 2, rows(2, 1))
        again.create_group("g")
        again.set_attrs("x", {"title": "more"})
        again.commit_lengths({"x": 3}, durable=False)
        again.close()
        last = self.reopened(make_backend, "r")
        np.testing.assert_array_equal(last.read_entries("x", 0, 3), rows(0, 3))
        assert last.get_attrs("x")["title"] == "more"
        last.close()

    def test_opening_in_w_discards_what_was_there(
        self, backend: StorageIODriver, make_backend: MakeBackend
    ) -> None:
        backend.create_group("g")
        backend.close()
        again = self.reopened(make_backend, "w")
        assert list(again.scan()) == []
        again.close()

    def test_the_mode_is_reported(self, make_backend: MakeBackend) -> None:
        assert make_backend("r").read_only
        assert not make_backend("a").read_only
        assert make_backend("a").access_mode == "a"

    # -- structure ---------------------------------------------------------------------
    def test_scan_reports_groups_before_their_children(self, backend: StorageIODriver) -> None:
        backend.create_group("a")
        backend.create_group("ab")
        backend.create_group("a/b")
        backend.create_variable("a/b/x", I4, appendable=True)
        backend.create_variable("ab/y", I4, appendable=False)
        paths = [record.path for record in backend.scan()]
        assert sorted(paths) == ["a", "a/b", "a/b/x", "ab", "ab/y"]
        for path in paths:
            parent = path.rpartition("/")[0]
            assert not parent or paths.index(parent) < paths.index(path)

    def test_scan_reports_each_variables_layout_and_kind(self, backend: StorageIODriver) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.create_variable("s", STRING, appendable=True)
        backend.create_variable("v", I4, appendable=False)
        records = {record.path: record for record in backend.scan()}
        assert (records["x"].layout, records["x"].appendable) == (F8, True)
        assert records["s"].layout is not None and records["s"].layout.storage == "string"
        assert (records["v"].layout, records["v"].appendable) == (I4, False)
        assert not any(record.is_group for record in records.values())

    def test_scan_reports_groups_with_their_attributes(self, backend: StorageIODriver) -> None:
        backend.create_group("g")
        backend.set_attrs("g", {"title": "run"})
        (record,) = backend.scan()
        assert record.is_group and record.attrs["title"] == "run"

    def test_a_new_appendable_variable_has_no_committed_entry(
        self, backend: StorageIODriver
    ) -> None:
        backend.create_variable("x", F8, appendable=True)
        (record,) = backend.scan()
        assert int(record.attrs.get(LENGTH_ATTR, 0)) == 0

    # -- attributes --------------------------------------------------------------------
    def test_attributes_read_back_as_set(self, backend: StorageIODriver) -> None:
        backend.create_variable("x", I4, appendable=False)
        values = {
            "text": "résumé",
            "int": np.int64(-3),
            "float": np.float64(2.5),
            "small": np.int8(1),
            "array": np.array([1.0, 2.0, 3.0]),
        }
        backend.set_attrs("x", values)
        got = backend.get_attrs("x")
        for name, value in values.items():
            np.testing.assert_array_equal(got[name], value)
            assert np.asarray(got[name]).dtype == np.asarray(value).dtype

    def test_setting_an_attribute_again_replaces_it(self, backend: StorageIODriver) -> None:
        backend.set_attrs("", {"a": "one", "b": "kept"})
        backend.set_attrs("", {"a": "two"})
        assert user_attrs(backend.root_attrs()) == {"a": "two", "b": "kept"}

    def test_root_attributes_are_there_after_reopening(
        self, backend: StorageIODriver, make_backend: MakeBackend
    ) -> None:
        backend.set_attrs("", {"title": "run"})
        backend.close()
        assert user_attrs(self.reopened(make_backend, "r").root_attrs()) == {"title": "run"}

    def test_changing_an_array_after_setting_it_changes_nothing(
        self, backend: StorageIODriver
    ) -> None:
        array = np.array([1, 2, 3])
        backend.set_attrs("", {"a": array})
        array[0] = 99
        np.testing.assert_array_equal(backend.get_attrs("")["a"], [1, 2, 3])

    # -- entries -----------------------------------------------------------------------
    def test_entries_read_back_with_their_dtype_and_shape(self, backend: StorageIODriver) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 5))
        got = backend.read_entries("x", 0, 5)
        assert got.dtype == np.dtype("f8") and got.shape == (5, 2, 3)
        np.testing.assert_array_equal(got, rows(0, 5))

    def test_written_entries_are_a_copy_of_the_buffer(self, backend: StorageIODriver) -> None:
        # The engine reuses its staging buffer once write_entries returns.
        backend.create_variable("x", F8, appendable=True)
        buffer = rows(0, 4)
        backend.write_entries("x", 0, buffer[:2])
        buffer[:] = -1
        np.testing.assert_array_equal(backend.read_entries("x", 0, 2), rows(0, 2))

    def test_writing_past_the_end_grows_the_variable(self, backend: StorageIODriver) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 2))
        backend.write_entries("x", 2, rows(2, 3))
        (record,) = backend.scan()
        assert record.length == 5
        np.testing.assert_array_equal(backend.read_entries("x", 0, 5), rows(0, 5))

    def test_writing_an_existing_entry_overwrites_it(self, backend: StorageIODriver) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 3))
        backend.write_entries("x", 1, rows(7, 1))
        np.testing.assert_array_equal(backend.read_entries("x", 1, 2), rows(7, 1))
        np.testing.assert_array_equal(backend.read_entries("x", 2, 3), rows(2, 1))

    @pytest.mark.parametrize(
        "window", [(0, 10, 2), (1, 9, 3), (9, -1, -1), (8, 2, -3), (5, 5, 1), (4, 5, 1)]
    )
    def test_entries_are_read_by_range(
        self, backend: StorageIODriver, window: tuple[int, int, int]
    ) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 10))
        want = rows(0, 10)[list(range(*window))]
        got = backend.read_entries("x", *window)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)

    def test_string_entries_read_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("s", STRING, appendable=True)
        backend.write_entries("s", 0, ["a", "", "ünïcode"])
        backend.write_entries("s", 3, ["d"])
        assert list(backend.read_entries("s", 0, 4)) == ["a", "", "ünïcode", "d"]

    def test_bytes_entries_read_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("b", BYTES, appendable=True)
        backend.write_entries("b", 0, [b"\x00\x01", b"xyz"])
        assert [bytes(item) for item in backend.read_entries("b", 0, 2)] == [b"\x00\x01", b"xyz"]

    # -- fixed values ------------------------------------------------------------------
    def test_a_numeric_value_reads_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", F8, appendable=False)
        backend.write_value("v", rows(0, 1)[0])
        np.testing.assert_array_equal(backend.read_value("v"), rows(0, 1)[0])

    def test_a_scalar_value_reads_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", I4, appendable=False)
        backend.write_value("v", np.array(7, dtype="i4"))
        assert int(backend.read_value("v")) == 7

    def test_writing_a_value_again_replaces_it(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", I4, appendable=False)
        backend.write_value("v", np.array(1, dtype="i4"))
        backend.write_value("v", np.array(2, dtype="i4"))
        assert int(backend.read_value("v")) == 2

    def test_a_string_value_reads_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", STRING, appendable=False)
        backend.write_value("v", "hello")
        assert str(backend.read_value("v")) == "hello"

    def test_a_bytes_value_reads_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", BYTES, appendable=False)
        backend.write_value("v", b"\x00abc")
        assert bytes(backend.read_value("v")) == b"\x00abc"

    def test_a_bytes_value_keeps_its_trailing_zero_bytes(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", BYTES, appendable=False)
        backend.write_value("v", b"abc\x00\x00")
        assert bytes(backend.read_value("v")) == b"abc\x00\x00"

    def test_an_empty_bytes_value_reads_back(self, backend: StorageIODriver) -> None:
        backend.create_variable("v", BYTES, appendable=False)
        backend.write_value("v", b"")
        assert bytes(backend.read_value("v")) == b""

    # -- what the engine relies on -----------------------------------------------------
    @pytest.mark.parametrize(
        "layout", [F8, I4, STRING, BYTES, Layout("numeric", F8.dtype, (10**6,))]
    )
    def test_chunk_entries_is_a_positive_int_of_the_layout_alone(
        self, make_backend: MakeBackend, layout: Layout
    ) -> None:
        entries = make_backend("w").chunk_entries(layout)
        assert type(entries) is int and entries >= 1
        assert make_backend(None).chunk_entries(layout) == entries  # before open, any object

    def test_committed_lengths_are_reported_by_scan(self, backend: StorageIODriver) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.create_variable("y", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 4))
        backend.write_entries("y", 0, rows(0, 2))
        backend.commit_lengths({"x": 3, "y": 2}, durable=False)
        lengths = {r.path: int(r.attrs[LENGTH_ATTR]) for r in backend.scan()}
        assert lengths == {"x": 3, "y": 2}

    def test_committed_lengths_are_there_after_reopening(
        self, backend: StorageIODriver, make_backend: MakeBackend
    ) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 4))
        backend.commit_lengths({"x": 4}, durable=True)
        backend.close()
        (record,) = self.reopened(make_backend, "r").scan()
        assert int(record.attrs[LENGTH_ATTR]) == 4 and record.length >= 4

    def test_committing_no_length_leaves_the_lengths_as_they_are(
        self, backend: StorageIODriver
    ) -> None:
        backend.create_variable("x", F8, appendable=True)
        backend.write_entries("x", 0, rows(0, 2))
        backend.commit_lengths({"x": 2}, durable=False)
        backend.commit_lengths({}, durable=True)
        (record,) = backend.scan()
        assert int(record.attrs[LENGTH_ATTR]) == 2

    # -- under the engine --------------------------------------------------------------
    def test_a_store_on_the_backend_writes_and_reads_back(self, make_backend: MakeBackend) -> None:
        with writebehind.StorageInterface(make_backend("w")) as store:
            for i in range(1000):
                store.traj.x.append(rows(i, 1)[0])
            store.traj.label.write("run")
            store.add_metadata("title", "contract")
        with writebehind.StorageInterface(make_backend("r")) as store:
            np.testing.assert_array_equal(store.traj.x.read(), rows(0, 1000))
            assert store.traj.label.read() == "run"
            assert store.read_metadata() == {"title": "contract"}

    # -- names -------------------------------------------------------------------------
    @pytest.mark.parametrize("name", ["", "a/b"])
    def test_check_name_refuses_names_no_path_can_hold(
        self, make_backend: MakeBackend, name: str
    ) -> None:
        with pytest.raises(ValueError, match="invalid name"):
            make_backend(None).check_name(name)

    def test_check_name_refuses_what_is_not_a_str(self, make_backend: MakeBackend) -> None:
        with pytest.raises(TypeError):
            make_backend(None).check_name(3)

    def test_check_name_returns_a_name_it_holds(self, make_backend: MakeBackend) -> None:
        assert make_backend(None).check_name("positions") == "positions"
