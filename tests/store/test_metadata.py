"""add_metadata / read_metadata on variables, groups and the root.

Tests that ask for ``face_store`` or ``open_face`` run on the sync and the async face
(tests/faces.py).
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pint
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from writebehind._core import unbound_from_json, unbound_to_json
from writebehind.codecs.metadata import encode_attr

# Store behaviour, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends

UREG = pint.get_application_registry()

VALUES = {
    "s": "langevin",
    "unicode": "ångström",
    "i": 7,
    "f": 0.5,
    "t": True,
    "fl": False,
    "ints": [1, 2, 3],
    "floats": [0.5, 1.5],
    "one": [4],
    "arr": np.array([1.0, 2.0]),
    "arr1": np.array([3], dtype=np.int16),
}


def assert_meta_equal(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert type(got[key]) is type(value), key
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype
            np.testing.assert_array_equal(got[key], value)
        else:
            assert got[key] == value


@pytest.mark.parametrize("target", ["root", "group", "variable"])
def test_metadata_round_trips_with_types(face_store, nc_path, reopen, target):
    node = {"root": face_store, "group": face_store.g, "variable": face_store.g.v}[target]
    face_store.g.v.append(1.0)
    for name, value in VALUES.items():
        node.add_metadata(name, value)
    assert_meta_equal(node.read_metadata(), VALUES)
    face_store.close()
    with reopen(nc_path) as again:
        node = {"root": again, "group": again.g, "variable": again.g.v}[target]
        assert_meta_equal(node.read_metadata(), VALUES)


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_metadata_on_unbound_node_is_buffered_until_bound(face_store, nc_path):
    face_store.traj.add_metadata("integrator", "langevin")
    assert face_store.traj.read_metadata() == {"integrator": "langevin"}
    face_store.traj.positions.append(np.zeros(3))
    face_store.flush()
    with netCDF4.Dataset(nc_path) as ds:
        assert ds["traj"].getncattr("integrator") == "langevin"


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_metadata_on_unbound_variable_is_written_with_it(face_store, nc_path):
    face_store.x.add_metadata("note", "first")
    face_store.x.write(3)
    face_store.flush()
    with netCDF4.Dataset(nc_path) as ds:
        assert ds["x"].getncattr("note") == "first"


def test_metadata_of_an_unbound_node_is_kept_until_the_node_exists(open_face, nc_path):
    with open_face(nc_path, "w") as store:
        store.traj.add_metadata("integrator", "langevin")
        assert store.traj.read_metadata() == {"integrator": "langevin"}
        store.traj.x.append(1)
    with open_face(nc_path, "r") as store:
        assert store.traj.read_metadata() == {"integrator": "langevin"}


def test_metadata_on_node_never_bound_is_kept_at_close(face_store, nc_path, reopen):
    face_store.lonely.add_metadata("kept", 1)
    face_store.close()
    with reopen(nc_path) as again:
        assert again.lonely.read_metadata() == {"kept": 1}


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_a_node_never_bound_stays_unbound_in_the_file(face_store, nc_path):
    # Not a group: netCDF cannot turn a group into a variable later (openmmtools code that
    # sets metadata first and writes in a later session failed with AttributeError).
    face_store.lonely.add_metadata("kept", 1)
    face_store.close()
    with netCDF4.Dataset(nc_path) as ds:
        assert "lonely" not in ds.groups and "lonely" not in ds.variables


@pytest.mark.parametrize("first_write", ["append", "write", "child"])
def test_a_node_with_metadata_from_an_earlier_session_can_be_written(
    face_store, nc_path, reopen, first_write
):
    face_store.g.energy.add_metadata("note", "kJ/mol")
    face_store.g.energy.add_metadata("scale", np.float32(0.5))
    face_store.close()
    with reopen(nc_path, "a") as again:
        node = again.g.energy
        {"append": lambda: node.append(1.5), "write": lambda: node.write(1.5)}.get(
            first_write, lambda: node.child.write(1)
        )()
    with reopen(nc_path) as again:
        assert_meta_equal(
            again.g.energy.read_metadata(), {"note": "kJ/mol", "scale": np.float32(0.5)}
        )
        if first_write == "child":
            assert again.g.energy.child.read() == 1
        else:
            assert again.g.energy.read(0 if first_write == "append" else None) == 1.5


@pytest.mark.file_specific("reads or writes the file with netCDF4")
@pytest.mark.parametrize(
    "damaged",
    [
        "{not json",
        "5",
        "[1, 2]",
        '{"lonely": 5}',
        '{"lonely": {"kept": 3}}',
        '{"lonely": {"kept": ["no-such-dtype", 1, null]}}',
        '{"lonely": {"kept": ["<i8", "text", null]}}',
        '{"lonely": {"kept": ["str", 1, null]}}',
        '{"a/b": {"kept": ["<i8", 1, null]}}',
        # a value its dtype cannot hold (OverflowError), or what encode_attr never stores:
        # other dtypes, 2-D values, a NUL in a str, an unknown type tag
        '{"lonely": {"kept": ["<i1", 1000, null]}}',
        '{"lonely": {"kept": ["<u8", -1, null]}}',
        '{"lonely": {"kept": ["|O", {"x": 1}, null]}}',
        '{"lonely": {"kept": ["<M8[s]", 5, null]}}',
        '{"lonely": {"kept": ["<c16", 1, null]}}',
        '{"lonely": {"kept": ["<U3", "abc", null]}}',
        '{"lonely": {"kept": ["<f8", [[1, 2], [3, 4]], null]}}',
        '{"lonely": {"kept": ["str", "a\\u0000b", null]}}',
        '{"lonely": {"kept": ["<i8", 1, "bogus"]}}',
    ],
)
def test_damaged_metadata_of_unbound_nodes_is_ignored_with_a_warning(
    store, nc_path, reopen, caplog, damaged
):
    # the damage is read by the open, the same for both faces: on the sync face only
    store.lonely.add_metadata("kept", 1)
    store.close()
    with netCDF4.Dataset(nc_path, "a") as ds:
        ds.setncattr("writebehind_unbound_metadata", damaged)
    with reopen(nc_path, "a") as again:
        assert again.lonely.read_metadata() == {}
        again.lonely.write(1)  # nothing from the damaged attribute reaches the file
    assert "damaged attribute writebehind_unbound_metadata" in caplog.text
    with reopen(nc_path) as again:
        assert again.lonely.read() == 1
        assert again.lonely.read_metadata() == {}


def test_metadata_overwrites_previous_value_and_type(face_store):
    face_store.x.write(1)
    face_store.x.add_metadata("a", True)
    face_store.x.add_metadata("a", "now a string")
    assert face_store.x.read_metadata() == {"a": "now a string"}


def test_bookkeeping_attributes_are_hidden(face_store, ureg):
    face_store.x.append(1.0 * ureg.kelvin)
    assert face_store.x.read_metadata() == {}


@pytest.mark.parametrize("name", ["", "_FillValue", "writebehind_codec", "a/b", 5])
def test_invalid_metadata_names_are_refused(face_store, name):
    face_store.x.write(1)
    with pytest.raises((ValueError, TypeError)):
        face_store.x.add_metadata(name, 1)


@pytest.mark.parametrize("value", [{"a": 1}, np.zeros((2, 2)), None, [[1, 2]], ["a", "b"]], ids=str)
def test_unsupported_metadata_values_raise_type_error(face_store, value):
    face_store.x.write(1)
    with pytest.raises(TypeError):
        face_store.x.add_metadata("a", value)


# -- attributes the value owns -------------------------------------------------------------
UNITS_REFUSED = (
    r"cannot set the attribute 'units' of 'traj/energy' with add_metadata: the value owns "
    r"its units: append a quantity in the units you want"
)


def test_units_metadata_of_a_variable_not_written_yet_is_refused(face_store):
    with pytest.raises(ValueError, match=UNITS_REFUSED):
        face_store.traj.energy.add_metadata("units", "kilocalorie/mole")


@pytest.mark.parametrize(
    "first_value",
    [1.5 * UREG.kilojoule / UREG.mole, np.zeros(3), "text"],
    ids=["quantity", "array", "str"],
)
def test_units_metadata_of_a_written_variable_is_refused_the_same_way(face_store, first_value):
    face_store.traj.energy.append(first_value)
    with pytest.raises(ValueError, match=UNITS_REFUSED):
        face_store.traj.energy.add_metadata("units", "kilocalorie/mole")


def test_refused_units_metadata_leaves_the_data_in_its_own_units(face_store, nc_path, reopen):
    with pytest.raises(ValueError):
        face_store.energy.add_metadata("units", "kilocalorie/mole")
    face_store.energy.append(1.5 * UREG.kilojoule / UREG.mole)
    face_store.close()
    with reopen(nc_path) as again:
        assert again.energy.read()[0] == 1.5 * UREG.kilojoule / UREG.mole


def test_refused_units_metadata_enqueues_nothing_and_keeps_nothing(face_store):
    face_store.traj.energy.append(1.0)
    before = face_store.stats().operations_enqueued
    for node in (face_store.traj.energy, face_store.traj.later):
        with pytest.raises(ValueError):
            node.add_metadata("units", "meter")
    assert face_store.stats().operations_enqueued == before
    assert face_store.traj.energy.read_metadata() == face_store.traj.later.read_metadata() == {}


@pytest.mark.parametrize("name", ["scale_factor", "add_offset"])
@pytest.mark.parametrize("written", [False, True], ids=["not written yet", "written"])
def test_cf_packing_metadata_of_a_variable_is_refused(face_store, name, written):
    if written:
        face_store.x.append(1.0)
    with pytest.raises(ValueError, match=f"attribute '{name}' of 'x'.*unpacked"):
        face_store.x.add_metadata(name, 2.0)


@pytest.mark.parametrize("target", ["root", "group"])
def test_units_metadata_of_a_group_is_ordinary_metadata(face_store, nc_path, reopen, target):
    face_store.traj.energy.append(1.0)
    node = face_store if target == "root" else face_store.traj
    node.add_metadata("units", "SI")
    face_store.close()
    with reopen(nc_path) as again:
        node = again if target == "root" else again.traj
        assert node.read_metadata() == {"units": "SI"}


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_units_left_for_a_node_by_an_older_session_yield_to_its_values(nc_path, reopen, caplog):
    with netCDF4.Dataset(nc_path, "w") as ds:  # as writebehind kept them before refusing
        ds.setncattr(
            "writebehind_unbound_metadata",
            unbound_to_json({"energy": {"units": ("kilocalorie/mole", None), "note": ("n", None)}}),
        )
    with reopen(nc_path, "a") as store:
        store.energy.append(1.5 * UREG.kilojoule / UREG.mole)
    assert "ignoring the metadata units" in caplog.text
    with reopen(nc_path) as again:
        assert again.energy.read()[0] == 1.5 * UREG.kilojoule / UREG.mole
        assert again.energy.read_metadata() == {"note": "n"}


@pytest.mark.parametrize("target", ["root", "unwritten node", "variable"])
def test_big_endian_metadata_arrays_read_back_native(face_store, target):
    face_store.v.write(1)
    store = face_store
    node = {"root": store, "unwritten node": store.later, "variable": store.v}[target]
    node.add_metadata("arr", np.arange(3, dtype=">f8"))
    got = node.read_metadata()["arr"]
    assert got.dtype == np.dtype("float64") and got.dtype.isnative
    np.testing.assert_array_equal(got, [0.0, 1.0, 2.0])


def test_a_memmap_metadata_value_reads_back_as_a_plain_array(face_store, tmp_path):
    value = np.memmap(tmp_path / "m.dat", dtype=np.int16, mode="w+", shape=(3,))
    value[:] = [1, 2, 3]
    face_store.add_metadata("arr", value)
    assert_meta_equal(face_store.read_metadata(), {"arr": np.array([1, 2, 3], dtype=np.int16)})


def test_a_metadata_value_of_an_unknown_ndarray_subclass_is_refused(face_store):
    class Tagged(np.ndarray):
        pass

    with pytest.raises(TypeError, match="Tagged"):
        face_store.add_metadata("arr", np.zeros(2).view(Tagged))
    assert face_store.read_metadata() == {}


@pytest.mark.file_specific("reads or writes the file with netCDF4")
def test_foreign_attributes_read_as_python_values(nc_path, reopen):
    with netCDF4.Dataset(nc_path, "w") as ds:
        ds.title = "from elsewhere"
        ds.count = np.int32(3)
        ds.values = np.array([1.0, 2.0])
    with reopen(nc_path) as store:
        meta = store.read_metadata()
    assert meta["title"] == "from elsewhere" and meta["count"] == 3
    np.testing.assert_array_equal(meta["values"], [1.0, 2.0])


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [([True, 2], TypeError, "mixes bools"), ([2**53 + 1, 0.5], ValueError, "exactly")],
)
def test_a_metadata_list_numpy_would_change_is_refused(face_store, value, error, match):
    with pytest.raises(error, match=match):
        face_store.add_metadata("bad", value)
    assert "bad" not in face_store.read_metadata()


def test_metadata_ints_beyond_int64_read_back_as_ints(face_store):
    face_store.add_metadata("seeds", [1, 2**63])
    assert face_store.read_metadata()["seeds"] == [1, 2**63]


_NUMBER_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint64", "float32", "float64"]
_METADATA_VALUES = st.one_of(
    st.text().filter(lambda s: "\x00" not in s),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    st.lists(st.floats(), max_size=4).map(tuple),
    st.lists(st.booleans(), max_size=4),
    st.sampled_from(_NUMBER_DTYPES).flatmap(
        lambda dt: (
            hnp.arrays(np.dtype(dt), st.integers(0, 4))
            | hnp.from_dtype(np.dtype(dt)).map(lambda v: np.dtype(dt).type(v))
        )
    ),
)


@settings(max_examples=60, deadline=None)
@given(value=_METADATA_VALUES)
def test_unbound_metadata_json_round_trips_every_value_encode_attr_allows(value):
    stored, tag = encode_attr("a", value)
    back, back_tag = unbound_from_json(unbound_to_json({"c": {"a": (stored, tag)}}))["c"]["a"]
    assert back_tag == tag and type(back) is type(stored)
    want, got = np.asarray(stored), np.asarray(back)
    assert got.dtype == want.dtype and got.shape == want.shape
    # Bit for bit (-0.0, ints beyond a float's precision), except that JSON has one NaN:
    # its sign and payload are not kept.
    nan = np.isnan(want) if want.dtype.kind == "f" else np.zeros(want.shape, bool)
    assert np.array_equal(np.isnan(got) if got.dtype.kind == "f" else nan, nan)
    assert got[~nan].tobytes() == want[~nan].tobytes()


def test_a_session_that_writes_nothing_leaves_unbound_metadata_as_it_was(
    face_store, nc_path, reopen, monkeypatch
):
    # Rewriting the same attribute at close would change the file (a structural flush,
    # its rollback copy) for a session that only read it.
    from writebehind import _engine

    face_store.lonely.add_metadata("kept", 1)
    face_store.close()
    written: list[dict] = []
    real = _engine.Engine.set_attrs_locked
    monkeypatch.setattr(
        _engine.Engine,
        "set_attrs_locked",
        lambda self, path, attrs: (written.append(attrs), real(self, path, attrs)),
    )
    with reopen(nc_path, "a") as again:
        assert again.lonely.read_metadata() == {"kept": 1}
    assert written == []
    with reopen(nc_path, "a") as again:
        again.lonely.add_metadata("more", 2)
    assert [list(attrs) for attrs in written] == [["writebehind_unbound_metadata"]]


def test_a_store_closes_even_if_keeping_unbound_metadata_fails(face_store, monkeypatch):
    face_store.lonely.add_metadata("kept", 1)

    def fail() -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(face_store._core, "materialize_pending_metadata", fail)
    with pytest.raises(RuntimeError, match="injected"):
        face_store.close()
    assert face_store._core.engine.closed
