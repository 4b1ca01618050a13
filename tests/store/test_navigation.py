"""Attribute and item access, membership, iteration and the SIDV properties.

Tests that ask for ``face_store`` or ``open_face`` run on the sync and the async face
(tests/faces.py).
"""

from __future__ import annotations

import pytest
from faces import unwrapped

from writebehind import StorageInterfaceDirVar
from writebehind._node import RESERVED_NAMES

# Store behaviour, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends


def test_attribute_access_creates_groups_and_variable(store, nc_path, reopen):
    store.a.b.c.write(1)
    store.close()
    with reopen(nc_path) as again:
        assert "a" in again and "a/b" in again and "a/b/c" in again
        assert again.a.b.c.read() == 1


def test_item_access_with_path_reaches_the_same_node(face_store):
    store = face_store
    assert unwrapped(store["a/b/c"]) is unwrapped(store.a.b.c)
    assert unwrapped(store.a["b"]) is unwrapped(store.a.b)
    assert unwrapped(store["/a/b"]) is unwrapped(store.a.b)


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_reserved_names_are_reachable_by_item_access(store, name):
    store[name].write(5)
    store.g[name].append(1)
    assert store[name].read() == 5
    assert store.g[name].read().tolist() == [1]


def test_underscore_names_are_reachable_by_item_access(store):
    store["_x"].write(1)
    assert store["_x"].read() == 1
    with pytest.raises(AttributeError):
        store._x  # noqa: B018


def test_membership_of_missing_and_invalid_paths(face_store):
    face_store.a.x.write(1)
    assert "a/x" in face_store and "a" in face_store
    assert "a/y" not in face_store and "b" not in face_store
    assert "bad/" not in face_store
    assert 3 not in face_store
    assert "x" in face_store.a


def test_iteration_lists_child_names_sorted(face_store):
    for name in ["zeta", "alpha", "mid"]:
        face_store.g[name].write(1)
    face_store.top.write(1)
    assert list(face_store.g) == ["alpha", "mid", "zeta"]
    assert list(face_store) == ["g", "top"]


def test_iteration_of_reopened_file(store, nc_path, reopen):
    store.g.b.write(1)
    store.g.a.append(1)
    store.close()
    with reopen(nc_path) as again:
        assert list(again) == ["g"]
        assert list(again.g) == ["a", "b"]


def test_len_of_appendable_variable_after_reopen_in_append_mode(face_store, nc_path, open_face):
    for i in range(4):
        face_store.x.append(i)
    face_store.close()
    with open_face(nc_path, "a") as again:
        assert "x" in again
        assert len(again.x) == 4
        again.x.append(4)
        assert len(again.x) == 5
        assert again.x.read().tolist() == [0, 1, 2, 3, 4]


def test_len_of_fixed_variable_raises_type_error(store):
    store.x.write(1)
    with pytest.raises(TypeError):
        len(store.x)


def test_path_name_predecessor(store):
    node = store.a.b.c
    assert isinstance(node, StorageInterfaceDirVar)
    assert node.path == "a/b/c" and node.name == "c"
    assert node.predecessor is store.a.b
    assert store.a.predecessor is None  # a top-level node, as in openmmtools


def test_a_node_constructed_as_in_openmmtools_reaches_the_same_variable(store):
    top = StorageInterfaceDirVar("top", store)
    leaf = StorageInterfaceDirVar("leaf", store, predecessor=store.group)
    top.write(3.0)
    leaf.append(1)
    assert (top.path, top.predecessor) == ("top", None)
    assert leaf.path == "group/leaf" and leaf.predecessor is store.group
    assert store.top.read() == 3.0 and store.group.leaf.read().tolist() == [1]


def test_a_node_needs_a_store(open_store, store, nc_path):
    with pytest.raises(TypeError, match="needs a store"):
        StorageInterfaceDirVar("x", nc_path)
    with (
        open_store(nc_path.with_name("other.nc"), "w") as other,
        pytest.raises(ValueError, match="another store"),
    ):
        StorageInterfaceDirVar("x", store, predecessor=other.group)


def test_variable_directory_bound_target_before_and_after_binding(store):
    node = store.g.x
    assert node.variable is None and node.bound_target is None
    assert store.g.directory is True  # has a child, not bound yet
    node.append(1.0)
    assert node.variable is not None and node.variable.appendable
    assert node.bound_target == node.variable
    assert node.directory is None
    assert store.g.directory is not None and store.g.directory.path == "g"
    assert store.g.variable is None


def test_variable_info_describes_the_variable(store, ureg):
    store.pos.append([1.0, 2.0, 3.0] * ureg.nanometer)
    info = store.pos.variable
    assert info.entry_shape == (3,) and info.units == "nanometer" and info.appendable


def test_dir_lists_api_and_children(store):
    store.g.child.write(1)
    assert "child" in dir(store.g) and "append" in dir(store.g)
    assert "g" in dir(store)


def test_store_attributes_are_not_children(store):
    assert callable(store.flush) and callable(store.close)
    store["flush"].write(1)
    assert store["flush"].read() == 1
