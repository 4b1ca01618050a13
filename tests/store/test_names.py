"""Names of groups, variables and metadata (issue 7, point 5).

A name netCDF can hold is stored as given, byte for byte, and found again after reopening;
a name it cannot hold is refused at the call with ValueError (TypeError for a non-str), and
nothing is enqueued. Nothing is ever renamed or normalized behind the user's back.
"""

from __future__ import annotations

import unicodedata

import netCDF4
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import writebehind
from writebehind._paths import MAX_NAME_BYTES

pytestmark = pytest.mark.timeout(60)

STORABLE = [
    "x",
    "positions",
    "Temperature_2m",
    "1st",  # netCDF allows a leading digit
    "a b",  # inner spaces are fine
    "with-dash.and.dots+plus",
    "ünïcödé",
    "日本語の名前",
    "emoji_🧪",
    "\u00e9t\u00e9",  # NFC é
    "x\u00a0",  # ends with a no-break space: only ASCII white space may not end a name
    "a" * MAX_NAME_BYTES,
    "é" * (MAX_NAME_BYTES // 2),
    "ends_in_digit_9",
]

REFUSED = {
    "empty": "",
    "slash-inside": "a/b",  # a path, not a name, for item access: see below
    "leading-space": " x",
    "trailing-space": "x ",
    "trailing-tab": "x\t",
    "leading-dash": "-x",
    "leading-dot": ".x",
    "leading-plus": "+x",
    "newline": "a\nb",
    "nul": "a\x00b",
    "del": "a\x7fb",
    "control": "a\x01b",
    "too-long": "a" * (MAX_NAME_BYTES + 1),
    "too-long-in-utf8": "é" * (MAX_NAME_BYTES // 2 + 1),
    "not-nfc": "e\u0301te\u0301",  # netCDF would store it as NFC: mangled, so refused
    "lone-surrogate": "a\ud800",
}

API_NAMES = [
    *sorted(writebehind.StorageInterfaceDirVar.__dict__.keys() - {"__doc__"}),
    "write",
    "append",
    "read",
    "add_metadata",
    "read_metadata",
    "variable",
    "directory",
    "path",
    "predecessor",
    "name",
    "bound_target",
    "to_xarray",
    "flush",
    "close",
    "stats",
    "file_name",
    "storage_driver",
    "closed",
    "_private",
    "__class__",
    "__init__",
]


def names_in_file(path) -> set[str]:
    with netCDF4.Dataset(path) as dataset:
        found = set(dataset.variables) | set(dataset.groups)
        for group in dataset.groups.values():
            found |= {f"{group.name}/{name}" for name in group.variables}
    return found


# -- stored as given -------------------------------------------------------------------
@pytest.mark.parametrize("name", STORABLE, ids=range(len(STORABLE)))
def test_storable_name_is_stored_exactly_and_found_after_reopening(nc_path, name):
    with writebehind.open(nc_path, "w") as store:
        store[name].write(1)
        store["group"][name].append(3.5)
    assert {name, f"group/{name}"} <= names_in_file(nc_path)
    with writebehind.open(nc_path, "r") as store:
        assert store[name].read() == 1
        assert store["group"][name].read().tolist() == [3.5]
        assert name in store and name in list(store)


@pytest.mark.parametrize("name", STORABLE, ids=range(len(STORABLE)))
def test_storable_name_is_a_group_name_too(nc_path, name):
    with writebehind.open(nc_path, "w") as store:
        store[name].inner.write("x")
    with writebehind.open(nc_path, "r") as store:
        assert store[name]["inner"].read() == "x"
        assert list(store) == [name]


@pytest.mark.parametrize("name", STORABLE, ids=range(len(STORABLE)))
def test_storable_name_is_a_metadata_name_too(nc_path, name):
    with writebehind.open(nc_path, "w") as store:
        store.add_metadata(name, "value")
        store.x.write(1)
        store.x.add_metadata(name, 7)
    with writebehind.open(nc_path, "r") as store:
        assert store.read_metadata() == {name: "value"}
        assert store.x.read_metadata() == {name: 7}


def test_unicode_names_reach_other_readers_unchanged(nc_path):
    with writebehind.open(nc_path, "w") as store:
        for name in STORABLE:
            store.g[name].write(0.5)
    with netCDF4.Dataset(nc_path) as dataset:
        assert set(dataset["g"].variables) == set(STORABLE)


# -- refused at the call -----------------------------------------------------------------
@pytest.mark.parametrize("name", list(REFUSED.values()), ids=list(REFUSED))
def test_name_netcdf_cannot_hold_is_refused_with_value_error_and_nothing_enqueued(nc_path, name):
    with writebehind.open(nc_path, "w") as store:
        before = store.stats().operations_enqueued
        with pytest.raises(ValueError):
            getattr(store.g, name).write(1)
        if name and "/" not in name:  # item access takes a path: "" and "a/b" are paths
            with pytest.raises(ValueError):
                store.g[name].write(1)
        assert store.stats().operations_enqueued == before
        store.flush()  # the store did not fail
    assert names_in_file(nc_path) == set()


@pytest.mark.parametrize("name", list(REFUSED.values()), ids=list(REFUSED))
def test_metadata_name_netcdf_cannot_hold_is_refused_at_the_call(nc_path, name):
    with writebehind.open(nc_path, "w") as store:
        store.x.write(1)
        with pytest.raises(ValueError):
            store.add_metadata(name, 1)
        with pytest.raises(ValueError):
            store.x.add_metadata(name, 1)
        store.flush()  # not a background failure
        assert store.read_metadata() == {}


@pytest.mark.parametrize("name", ["_x", "_FillValue", "writebehind_codec", "writebehind_x"])
def test_reserved_metadata_names_are_refused(store, name):
    with pytest.raises(ValueError):
        store.add_metadata(name, 1)


@pytest.mark.parametrize("name", [1, None, b"x", ("a",)])
def test_non_str_names_are_refused_with_type_error(store, name):
    with pytest.raises(TypeError):
        store[name].write(1)
    with pytest.raises(TypeError):
        store.add_metadata(name, 1)


def test_a_slash_in_item_access_is_a_path_not_a_name(store):
    store["a/b"].write(1)
    assert list(store) == ["a"] and list(store.a) == ["b"]
    with pytest.raises(ValueError):
        store["a//b"].write(2)


# -- names that clash with the API ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(API_NAMES)))
def test_api_names_are_reached_by_item_access_and_stored(nc_path, name):
    try:
        writebehind._paths.check_name(name)
    except ValueError:
        pytest.skip("not a name netCDF can hold")
    with writebehind.open(nc_path, "w") as store:
        store[name].write(1)
        store.g[name].append(2)
        assert store[name].read() == 1
    with writebehind.open(nc_path, "r") as store:
        assert store[name].read() == 1
        assert store["g"][name].read().tolist() == [2]
        assert set(store) == {name, "g"}


def test_api_names_by_attribute_are_the_api_not_nodes(store):
    store["read"].write(5)
    assert callable(store.x.read) and callable(store.read_metadata)
    assert store["read"].read() == 5


# -- names next to writebehind's own dimensions --------------------------------------------
# An appendable variable x has the dimensions x_entry (unlimited) and x_axis1, ... A variable
# named like a dimension of its group is stored by netCDF-C as the HDF5 dataset
# _nc4_non_coord_<name> ("<name>" is the dimension's); the chunk-index journal and the
# recovery must find that dataset, and the chunk cache must not be set on it (netCDF-C then
# reopens the dimension's dataset in its place). The other order -- the variable first --
# never clashes: x's dimension is then called x_entry_1.
@pytest.mark.parametrize("second", ["x_entry", "x_axis1", "x_axis0", "x_entry_1"])
def test_a_variable_named_like_another_ones_dimension_is_stored(nc_path, second):
    import numpy as np

    with writebehind.open(nc_path, "w") as store:
        store.x.append(np.zeros(3))
        store[second].append(np.ones(2))
        store.x.append(np.full(3, 2.0))
    with writebehind.open(nc_path, "r") as store:
        assert store.x.read().tolist() == [[0, 0, 0], [2, 2, 2]]
        assert store[second].read().tolist() == [[1, 1]]


@pytest.mark.parametrize("first_named_like_a_dimension", [False, True])
@pytest.mark.parametrize("second", ["x_entry", "x_axis1", "x_entry_entry"])
def test_names_like_dimensions_survive_flushes_and_reopening_in_either_order(
    nc_path, second, first_named_like_a_dimension
):
    # Flushes that only append are guarded by the chunk-index journal, which reads the
    # variables' HDF5 datasets; reopening sets the chunk cache of every appendable variable.
    import numpy as np

    names = [second, "x"] if first_named_like_a_dimension else ["x", second]
    shapes = {"x": 3, second: 2}
    with writebehind.open(nc_path, "w") as store:
        for name in names:
            store[name].append(np.zeros(shapes[name]))
            store.flush()
        for i in (1, 2):
            for name in names:
                store[name].append(np.full(shapes[name], float(i)))
            store.flush(durable=True)
    with writebehind.open(nc_path, "a") as store:
        for name in names:
            store[name].append(np.full(shapes[name], 3.0))
            store.flush()
    with writebehind.open(nc_path, "r") as store:
        for name in names:
            assert store[name].read().tolist() == [[float(i)] * shapes[name] for i in range(4)]
    with netCDF4.Dataset(nc_path) as dataset:  # plain netCDF sees the same
        for name in names:
            assert dataset[name][:].tolist() == [[float(i)] * shapes[name] for i in range(4)]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    names=st.lists(
        st.sampled_from(
            ["x", "x_entry", "x_axis1", "x_axis2", "x_entry_entry", "x_entry_1", "x_axis1_entry"]
        ),
        min_size=2,
        max_size=4,
        unique=True,
    ),
    data=st.data(),
)
def test_variables_named_like_each_others_dimensions_keep_every_entry(tmp_path, names, data):
    import numpy as np

    path = tmp_path / "clash.nc"
    path.unlink(missing_ok=True)
    shapes = {name: data.draw(st.sampled_from([(), (2,), (2, 2)]), name) for name in names}
    flushes = data.draw(st.lists(st.booleans(), min_size=3, max_size=3), "flushes")
    with writebehind.open(path, "w") as store:
        for step, flush in enumerate(flushes):
            for name in names:
                store[name].append(np.full(shapes[name], float(step)))
            if flush:
                store.flush()
    with writebehind.open(path, "a") as store:
        for name in names:
            store[name].append(np.full(shapes[name], 3.0))
    with writebehind.open(path, "r") as store:
        for name in names:
            assert np.array_equal(
                store[name].read(), [np.full(shapes[name], float(i)) for i in range(4)]
            )


# -- any name hypothesis can think of ----------------------------------------------------
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.text(min_size=0, max_size=40))
def test_any_name_is_stored_exactly_or_refused_with_value_error(tmp_path, name):
    path = tmp_path / "names.nc"
    with writebehind.open(path, "w") as store:
        try:  # "" and "a/b" are paths in item access: try them as names (attribute access)
            node = store.g._child(name) if not name or "/" in name else store.g[name]
            node.write(1)
        except ValueError:
            assert "g" not in store or name not in list(store.g)
            return
    with writebehind.open(path, "r") as store:
        assert list(store.g) == [name]
        assert store.g[name].read() == 1
    assert unicodedata.normalize("NFC", name) == name
