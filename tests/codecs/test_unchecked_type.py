"""``codecs.unchecked_type``: the type whose values the append path may stage unencoded.

It is sound only if the encoder returns every value of that type unchanged and never
raises for one: these tests hold the two to each other.
"""

from __future__ import annotations

import numpy as np
import pint
import pytest
from hypothesis import given
from hypothesis import strategies as st

from writebehind.codecs import make_encoder, spec_for, unchecked_type

UREG = pint.UnitRegistry()


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (0.5, float),
        (True, bool),
        (np.float64(0.5), np.float64),
        (np.float32(0.5), np.float32),
        (np.int16(3), np.int16),
        (np.bool_(True), np.bool_),
    ],
    ids=["float", "bool", "np.float64", "np.float32", "np.int16", "np.bool_"],
)
def test_a_scalar_variable_has_its_plain_type_unchecked(first, expected):
    assert unchecked_type(spec_for(first)) is expected


@pytest.mark.parametrize(
    "first",
    [1, -(2**62), "text", b"bytes", [1.0, 2.0], np.zeros(3), {"a": 1}, UREG.Quantity(1.5, "nm")],
    ids=["int", "negative int", "str", "bytes", "list", "array", "dict", "quantity"],
)
def test_a_variable_whose_values_all_need_checks_has_none(first):
    # ints: the range of the dtype; the others: shapes, units, encodings
    assert unchecked_type(spec_for(first)) is None


FIRSTS = [0.5, True, np.float64(0.5), np.float32(0.5), np.int16(3), np.uint8(1), np.bool_(1)]


def _values_of(kind: type) -> st.SearchStrategy:
    if kind is float or kind is np.float64:
        return st.floats(allow_nan=True, allow_infinity=True).map(kind)
    if kind is bool:
        return st.booleans()
    if kind is np.bool_:
        return st.booleans().map(np.bool_)
    if np.issubdtype(kind, np.floating):
        return st.floats(width=32, allow_nan=True, allow_infinity=True).map(kind)
    info = np.iinfo(kind)
    return st.integers(int(info.min), int(info.max)).map(kind)


@pytest.mark.parametrize("first", FIRSTS, ids=[type(f).__name__ for f in FIRSTS])
@given(data=st.data())
def test_the_encoder_returns_every_value_of_the_unchecked_type_unchanged(first, data):
    spec = spec_for(first)
    kind = unchecked_type(spec)
    assert kind is not None
    value = data.draw(_values_of(kind))
    assert type(value) is kind
    assert make_encoder(spec)(value) is value
