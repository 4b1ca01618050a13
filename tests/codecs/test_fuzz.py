"""Fuzzed values: every kind writebehind stores comes back exactly (issue 7, point 4).

Hypothesis generates values of every kind in the types table (issue 2): Python and numpy
scalars at their extremes, NaN (any payload), infinities and -0.0, str of any Unicode but
NUL, bytes, rectangular lists and tuples, arrays of every supported dtype including empty
ones and 0-d, dicts nesting all of these with quantities, and quantities. Each is written
(or appended) and read back, then read again after the file is closed and reopened, and
must be *identical*: same type, same dtype and shape, same bits. Values writebehind cannot
store are refused at the call with TypeError or ValueError and enqueue nothing.

Settings: tests/fuzz_settings.py (``WRITEBEHIND_FUZZ=long`` for a long run).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pint
import pytest
from fuzz_settings import FUZZ, TIMEOUT_SECONDS, scaled
from fuzz_values import ARRAY_DTYPES, FLOATS, INT64, STORABLE_TEXT, assert_identical
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import writebehind

pytestmark = pytest.mark.timeout(TIMEOUT_SECONDS)

UREG = pint.get_application_registry()
DTYPES = ARRAY_DTYPES
UNITS = ["nanometer", "kelvin", "kilojoule/mole", "dimensionless", "nanometer**2/picosecond"]

# -- strategies ----------------------------------------------------------------------------
dtypes = st.sampled_from(DTYPES)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


def numpy_scalars(dtype: np.dtype | None = None) -> st.SearchStrategy:
    chosen = st.just(dtype) if dtype is not None else dtypes
    return chosen.flatmap(lambda d: hnp.from_dtype(d).map(d.type))


def arrays(dtype=None, shape=None) -> st.SearchStrategy:
    return hnp.arrays(dtypes if dtype is None else dtype, shapes if shape is None else shape)


def nested_tuple(value: Any) -> Any:
    return tuple(nested_tuple(v) for v in value) if isinstance(value, list) else value


def sequences(dtype=None, shape=None, container=None) -> st.SearchStrategy:
    """Rectangular lists or tuples of bool, int (int64) or float."""
    chosen = st.sampled_from([np.dtype(bool), np.dtype(np.int64), np.dtype(np.float64)])
    dt = st.just(dtype) if dtype is not None else chosen
    shape = shape or hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)
    kind = st.just(container) if container else st.sampled_from([list, tuple])
    return st.tuples(dt.flatmap(lambda d: hnp.arrays(d, shape)), kind).map(
        lambda pair: pair[0].tolist() if pair[1] is list else nested_tuple(pair[0].tolist())
    )


def quantities(magnitudes: st.SearchStrategy | None = None) -> st.SearchStrategy:
    if magnitudes is None:
        magnitudes = st.one_of(
            FLOATS,
            INT64,
            arrays(st.sampled_from([np.dtype(np.float64), np.dtype(np.int32)])),
        )
    return st.builds(lambda m, u: UREG.Quantity(m, u), magnitudes, st.sampled_from(UNITS))


DICT_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),  # dicts hold uint64 too
    FLOATS,
    st.text(),  # NUL is fine inside a dict
    st.binary(max_size=20),
    numpy_scalars(),
    arrays(shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
    quantities(st.one_of(FLOATS, arrays(np.dtype(np.float64), (2,)))),
)
dict_values = st.recursive(
    DICT_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=12,
)
dicts = st.dictionaries(st.text(max_size=8), dict_values, max_size=5)

WRITABLE = st.one_of(
    st.booleans(),
    INT64,
    FLOATS,
    numpy_scalars(),
    STORABLE_TEXT,
    st.binary(),
    sequences(),
    arrays(),
    dicts,
    quantities(),
)


# -- written values --------------------------------------------------------------------------
def test_written_values_of_every_kind_round_trip_exactly(tmp_path):
    path = tmp_path / "written.nc"
    store = writebehind.open(path, "w")
    written: dict[str, Any] = {}
    names = itertools.count()

    @FUZZ
    @given(value=WRITABLE)
    def check(value):
        name = f"v{next(names)}"  # a new variable per example, replays included
        store[name].write(value)
        assert_identical(store[name].read(), value)
        written[name] = value

    try:
        check()
    finally:
        store.close()
    with writebehind.open(path, "r") as again:
        for name, value in written.items():
            assert_identical(again[name].read(), value, name)


def test_overwriting_a_value_keeps_only_the_last(tmp_path):
    path = tmp_path / "overwritten.nc"

    @scaled(0.5)
    @given(values=st.lists(arrays(np.dtype(np.float64), (3,)), min_size=1, max_size=5))
    def check(values):
        with writebehind.open(path, "w") as store:
            for value in values:
                store.x.write(value)
            assert_identical(store.x.read(), values[-1])
        with writebehind.open(path, "r") as again:
            assert_identical(again.x.read(), values[-1])

    check()


# -- appended entries --------------------------------------------------------------------------
def entry_lists() -> st.SearchStrategy:
    """(entries, expected read()) for one appendable variable: entries of one spec."""

    def of(entry: st.SearchStrategy, stack) -> st.SearchStrategy:
        return st.lists(entry, min_size=1, max_size=12).map(lambda es: (es, stack(es)))

    def stack_arrays(dtype, shape):
        return lambda es: np.stack(es) if es else np.empty((0, *shape), dtype)

    python_scalars = st.sampled_from(
        [(st.booleans(), bool), (INT64, np.int64), (FLOATS, np.float64)]
    ).flatmap(lambda pair: of(pair[0], lambda es, d=pair[1]: np.array(es, dtype=d)))
    numpy_entries = dtypes.flatmap(
        lambda d: of(numpy_scalars(d), lambda es, d=d: np.array(es, dtype=d))
    )
    array_entries = st.tuples(dtypes, shapes).flatmap(
        lambda ds: of(arrays(ds[0], ds[1]), stack_arrays(*ds))
    )
    sequence_entries = st.tuples(
        st.sampled_from([np.dtype(bool), np.dtype(np.int64), np.dtype(np.float64)]),
        hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=3),
        st.sampled_from([list, tuple]),
    ).flatmap(lambda args: of(sequences(*args), list))
    quantity_entries = st.tuples(st.sampled_from(UNITS), shapes).flatmap(
        lambda us: of(
            arrays(np.dtype(np.float64), us[1]).map(lambda m, u=us[0]: UREG.Quantity(m, u)),
            lambda es, u=us[0], s=us[1]: UREG.Quantity(np.stack([e.magnitude for e in es]), u),
        )
    )
    return st.one_of(
        python_scalars,
        numpy_entries,
        of(STORABLE_TEXT, list),
        of(st.binary(), list),
        array_entries,
        sequence_entries,
        of(dicts, list),
        quantity_entries,
    )


def test_appended_entries_of_every_kind_round_trip_exactly(tmp_path):
    path = tmp_path / "appended.nc"
    store = writebehind.open(path, "w")
    appended: dict[str, tuple[list, Any]] = {}
    names = itertools.count()

    @FUZZ
    @given(case=entry_lists(), data=st.data())
    def check(case, data):
        entries, expected = case
        name = f"v{next(names)}"
        node = store[name]
        for entry in entries:
            node.append(entry)
        assert len(node) == len(entries)
        assert_identical(node.read(), expected)
        index = data.draw(st.integers(-len(entries), len(entries) - 1), label="index")
        got = node.read(index)
        want = entries[index]
        if isinstance(want, bool | int | float) and not isinstance(want, np.generic):
            want = type(want)(want)  # python scalars read back as themselves
        assert_identical(got, want)
        window = data.draw(st.slices(len(entries)), label="slice")
        assert_identical(node.read(window), slice_of(expected, window))
        appended[name] = (entries, expected)

    try:
        check()
    finally:
        store.close()
    with writebehind.open(path, "r") as again:
        for name, (entries, expected) in appended.items():
            assert len(again[name]) == len(entries)
            assert_identical(again[name].read(), expected, name)


def slice_of(expected: Any, window: slice) -> Any:
    if isinstance(expected, pint.Quantity):
        return UREG.Quantity(expected.magnitude[window], expected.units)
    return expected[window]


# -- values that cannot be stored ---------------------------------------------------------------
def self_containing_list() -> list:
    loop: list = []
    loop.append(loop)
    return loop


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"deep": value}


UNSTORABLE = st.one_of(
    st.text(min_size=1).map(lambda s: s[: len(s) // 2] + "\x00" + s[len(s) // 2 :]),
    st.text().map(lambda s: s + "\ud800"),  # a lone surrogate
    st.integers(min_value=2**63),
    st.integers(max_value=-(2**63) - 1),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=2**64), min_size=1),
    st.dictionaries(st.text(max_size=3), st.just("\udfff"), min_size=1),
    st.dictionaries(st.integers(), st.none(), min_size=1),
    st.just(nested(200)),
    st.just({"loop": self_containing_list()}),
    st.sets(st.integers(), max_size=3),
    st.complex_numbers(),
    hnp.arrays(np.complex128, (2,)),
    hnp.arrays(np.float16, (2,)),
    st.just(np.array(["a", "b"])),
    st.just(np.array([1, "x"], dtype=object)),
    st.just(np.arange(3).astype("datetime64[s]")),
    st.just(np.ma.masked_array([1.0, 2.0], mask=[0, 1])),
    st.just([[1, 2], [3]]),
    st.just([1, "a"]),
    st.just({"q": UREG.Quantity(1.0, "meter**10000")}),
    st.just(object()),
)


@FUZZ
@given(value=UNSTORABLE)
def test_unstorable_values_are_refused_at_the_call_and_enqueue_nothing(store, value):
    before = store.stats().operations_enqueued
    for call in (lambda: store.w.write(value), lambda: store.a.append(value)):
        with pytest.raises((TypeError, ValueError)):
            call()
    assert store.stats().operations_enqueued == before
    assert "w" not in store and "a" not in store


@scaled(0.5)
@given(first=arrays(np.dtype(np.float64), (3,)), other=WRITABLE)
def test_entries_that_do_not_fit_the_first_are_refused_and_change_nothing(store, first, other):
    if "x" not in store:
        store.x.append(first)
    length = len(store.x)
    fits = (
        isinstance(other, np.ndarray)
        and other.shape == (3,)
        and (other.dtype.kind in "iuf" and np.can_cast(other.dtype, np.float64, "safe"))
        # an int that float64 cannot hold exactly (beyond 2**53) is refused, not rounded
        and (other.dtype.kind == "f" or all(int(float(v)) == int(v) for v in other))
    )
    if fits:
        store.x.append(other)
        assert len(store.x) == length + 1
    else:
        with pytest.raises((TypeError, ValueError)):
            store.x.append(other)
        assert len(store.x) == length


def test_the_integer_extremes_are_exact(store):
    values = [-(2**63), 2**63 - 1, 0, -1]
    for value in values:
        store.i.append(value)
    store.u.append(np.uint64(2**64 - 1))
    store.d.write({"max": 2**64 - 1, "min": -(2**63)})
    assert store.i.read().tolist() == values
    assert store.u.read(0) == np.uint64(2**64 - 1)
    assert store.d.read() == {"max": 2**64 - 1, "min": -(2**63)}
