"""The catalog (``_catalog.Catalog``): the one owner of a store's nodes, the metadata kept
for nodes not written yet, and the damaged entries of the file."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from writebehind._catalog import Catalog, GroupEntry, VariableEntry
from writebehind._errors import FormatError
from writebehind.codecs import make_encoder, spec_for


class _Guard:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def _catalog() -> Catalog:
    return Catalog(_Guard())


def _variable(path: str) -> VariableEntry:
    spec = spec_for(np.zeros(3))
    return VariableEntry(path, spec, True, make_encoder(spec))


def test_a_new_catalog_holds_only_the_root_group() -> None:
    catalog = _catalog()
    assert isinstance(catalog.get(""), GroupEntry)
    assert catalog.paths() == []


def test_adding_a_group_and_a_variable_makes_them_children_of_their_parent() -> None:
    catalog = _catalog()
    catalog.add_group("a")
    catalog.add_variable(_variable("a/x"))
    assert catalog.children("") == ["a"]
    assert catalog.children("a") == ["x"]
    assert catalog.paths() == ["a", "a/x"]


def test_a_variable_has_no_children() -> None:
    catalog = _catalog()
    catalog.add_variable(_variable("x"))
    assert catalog.children("x") == []


def test_a_broken_entry_is_listed_and_raises_its_error_on_lookup() -> None:
    catalog = _catalog()
    error = FormatError("'x': damaged")
    catalog.add_broken("x", error)
    assert "x" in catalog and catalog.get("x") is None
    assert catalog.children("") == ["x"]
    assert catalog.broken_paths() == ["x"]
    with pytest.raises(FormatError) as raised:
        catalog.lookup("x")
    assert raised.value is error


def test_buffered_metadata_is_taken_once() -> None:
    catalog = _catalog()
    catalog.buffer_metadata("x", {"a": (1, None)})
    catalog.buffer_metadata("x", {"b": ("two", "str")})
    assert catalog.take_pending_metadata("x") == {"a": (1, None), "b": ("two", "str")}
    assert catalog.take_pending_metadata("x") == {}


def test_reading_pending_metadata_gives_a_copy() -> None:
    catalog = _catalog()
    catalog.buffer_metadata("x", {"a": (1, None)})
    copy = catalog.pending_metadata("x")
    copy["b"] = (2, None)
    assert catalog.pending_metadata("x") == {"a": (1, None)}


def test_unbound_lists_the_metadata_of_nodes_not_bound_sorted() -> None:
    catalog = _catalog()
    for path in ("z", "x", "a"):
        catalog.buffer_metadata(path, {"n": (1, None)})
    catalog.add_group("x")
    assert [path for path, _ in catalog.unbound()] == ["a", "z"]


def test_forgetting_metadata_of_bound_nodes_keeps_that_of_the_others() -> None:
    catalog = _catalog()
    catalog.buffer_metadata("bound", {"n": (1, None)})
    catalog.buffer_metadata("broken", {"n": (1, None)})
    catalog.buffer_metadata("free", {"n": (1, None)})
    catalog.add_group("bound")
    catalog.add_broken("broken", FormatError("damaged"))
    catalog.forget_metadata_of_bound()
    assert catalog.pending_metadata("bound") == catalog.pending_metadata("broken") == {}
    assert catalog.pending_metadata("free") == {"n": (1, None)}


def test_the_catalog_uses_the_lock_its_guard_has_now() -> None:
    # A forked child's engine gets a new lock (the parent's may be held by nobody).
    guard = _Guard()
    catalog = Catalog(guard)
    held = guard.lock
    held.acquire()
    guard.lock = threading.Lock()
    try:
        assert catalog.children("") == []  # would block on the old lock
    finally:
        held.release()


def test_a_fixed_variable_has_no_staging_and_length_zero() -> None:
    spec = spec_for(1.0)
    var: Any = VariableEntry("x", spec, False, make_encoder(spec))
    assert var.staging is None and var.length == 0


def test_the_store_s_catalog_holds_what_was_written(open_store: Any, nc_path: Any) -> None:
    store = open_store(nc_path)
    store.a.x.append(np.zeros(3))
    store.b.write(1)
    store.c.add_metadata("n", 1)
    catalog = store._core.catalog
    assert catalog.paths() == ["a", "a/x", "b"]
    entry = catalog.get("a/x")
    assert isinstance(entry, VariableEntry) and entry.length == 1
    assert catalog.pending_metadata("c") == {"n": (1, None)}
    store.close()
