"""A state machine against an in-memory model (issue 7, point 4).

Hypothesis drives random sequences of write, append, write-at-index, read (whole, one
entry, slices), flush, and close-and-reopen on one file, and compares every read with a
plain Python model of what the file must hold. Variables of several kinds live in nested
groups. Settings: tests/fuzz_settings.py (``WRITEBEHIND_FUZZ=long`` for a long run).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pint
import pytest
from fuzz_settings import TIMEOUT_SECONDS, scaled
from fuzz_values import FLOATS, INT64, STORABLE_TEXT, assert_identical
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import writebehind
from writebehind.drivers.memory import MemoryBackend, MemoryFile

pytestmark = pytest.mark.timeout(TIMEOUT_SECONDS)

UREG = pint.get_application_registry()
NAMES = ["a", "b", "e", "g/c", "g/d", "h/i/j", "h/k", "ünï"]
KINDS = {
    "vector": st.lists(FLOATS, min_size=3, max_size=3).map(np.array),
    "int": INT64,
    "str": STORABLE_TEXT,
    "dict": st.dictionaries(
        st.text(max_size=4), st.one_of(INT64, FLOATS, st.text(max_size=5)), max_size=3
    ),
    "quantity": FLOATS.map(lambda m: UREG.Quantity(m, "nanometer")),
}


@dataclass
class Expected:
    kind: str
    appendable: bool
    value: Any = None  # a fixed variable's value
    entries: list = field(default_factory=list)  # an appendable variable's entries


def stacked(kind: str, entries: list) -> Any:
    """What read() of an appendable variable of ``kind`` gives for ``entries``."""
    if kind == "vector":
        return np.stack(entries)
    if kind == "int":
        return np.array(entries, dtype=np.int64)
    if kind == "quantity":
        return UREG.Quantity(np.array([e.magnitude for e in entries]), "nanometer")
    return list(entries)


class StoreMachine(RuleBasedStateMachine):
    """The model on a netCDF file; ``MemoryStoreMachine`` runs it on the memory backend."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.path = Path(self.directory.name) / "machine.nc"
        self.files: dict[str, MemoryFile] = {}
        self.store = self.open("w")
        self.model: dict[str, Expected] = {}

    def open(self, mode: str) -> writebehind.StorageInterface:
        return writebehind.open(self.path, mode)

    def teardown(self) -> None:
        self.store.close()
        self.directory.cleanup()

    def names(self, appendable: bool | None = None) -> list[str]:
        return sorted(
            name
            for name, var in self.model.items()
            if appendable is None or var.appendable == appendable
        )

    # -- writes ---------------------------------------------------------------------------
    @rule(data=st.data(), name=st.sampled_from(NAMES), kind=st.sampled_from(sorted(KINDS)))
    def write_new_fixed(self, data, name, kind):
        if name in self.model:
            return
        value = data.draw(KINDS[kind], label="value")
        self.store[name].write(value)
        self.model[name] = Expected(kind, False, value=value)

    @precondition(lambda self: self.names(appendable=False))
    @rule(data=st.data())
    def overwrite_fixed(self, data):
        name = data.draw(st.sampled_from(self.names(appendable=False)), label="name")
        var = self.model[name]
        value = data.draw(KINDS[var.kind], label="value")
        self.store[name].write(value)
        var.value = value

    @rule(data=st.data(), name=st.sampled_from(NAMES), kind=st.sampled_from(sorted(KINDS)))
    def append_to_new(self, data, name, kind):
        if name in self.model:
            return
        entry = data.draw(KINDS[kind], label="entry")
        self.store[name].append(entry)
        self.model[name] = Expected(kind, True, entries=[entry])

    @precondition(lambda self: self.names(appendable=True))
    @rule(data=st.data(), count=st.integers(1, 20))
    def append(self, data, count):
        name = data.draw(st.sampled_from(self.names(appendable=True)), label="name")
        var = self.model[name]
        for _ in range(count):
            entry = data.draw(KINDS[var.kind], label="entry")
            self.store[name].append(entry)
            var.entries.append(entry)

    @precondition(lambda self: self.names(appendable=True))
    @rule(data=st.data())
    def write_at_index(self, data):
        name = data.draw(st.sampled_from(self.names(appendable=True)), label="name")
        var = self.model[name]
        index = data.draw(st.integers(-len(var.entries), len(var.entries) - 1), label="index")
        entry = data.draw(KINDS[var.kind], label="entry")
        self.store[name].write(entry, at_index=index)
        var.entries[index] = entry

    @precondition(lambda self: self.names(appendable=True))
    @rule(data=st.data())
    def refused_write_beyond_the_end(self, data):
        name = data.draw(st.sampled_from(self.names(appendable=True)), label="name")
        var = self.model[name]
        entry = data.draw(KINDS[var.kind], label="entry")
        with pytest.raises(ValueError):
            self.store[name].write(entry, at_index=len(var.entries))

    # -- reads ----------------------------------------------------------------------------
    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read(self, data):
        name = data.draw(st.sampled_from(self.names()), label="name")
        self.check(name)

    @precondition(lambda self: self.names(appendable=True))
    @rule(data=st.data())
    def read_one_entry(self, data):
        name = data.draw(st.sampled_from(self.names(appendable=True)), label="name")
        var = self.model[name]
        index = data.draw(st.integers(-len(var.entries), len(var.entries) - 1), label="index")
        assert_identical(self.store[name].read(index), var.entries[index], name)

    @precondition(lambda self: self.names(appendable=True))
    @rule(data=st.data())
    def read_a_slice(self, data):
        name = data.draw(st.sampled_from(self.names(appendable=True)), label="name")
        var = self.model[name]
        window = data.draw(st.slices(len(var.entries)), label="slice")
        want = var.entries[window]
        got = self.store[name].read(window)
        if want:
            assert_identical(got, stacked(var.kind, want), name)
        else:
            assert len(got) == 0

    # -- flush, reopen --------------------------------------------------------------------
    @rule(durable=st.booleans())
    def flush(self, durable):
        self.store.flush(durable=durable)

    @rule()
    def close_and_reopen(self):
        self.store.close()
        self.store = self.open("a")
        for name in self.model:
            self.check(name)

    def check(self, name: str) -> None:
        var = self.model[name]
        got = self.store[name].read()
        if var.appendable:
            assert len(self.store[name]) == len(var.entries)
            assert_identical(got, stacked(var.kind, var.entries), name)
        else:
            assert_identical(got, var.value, name)

    @invariant()
    def the_store_lists_every_variable(self):
        for name in self.model:
            assert name in self.store


class MemoryStoreMachine(StoreMachine):
    def open(self, mode: str) -> writebehind.StorageInterface:
        return writebehind.StorageInterface(MemoryBackend("machine", mode, files=self.files))


StoreMachine.TestCase.settings = scaled(0.5)  # each example makes a new file
test_store_matches_the_model = StoreMachine.TestCase
MemoryStoreMachine.TestCase.settings = scaled(0.5)
test_store_on_the_memory_backend_matches_the_model = MemoryStoreMachine.TestCase
