"""The dtype oracle, hypothesis strategies and the identity check shared by the codec and
store tests (tests/codecs/, tests/store/test_stateful.py; settings: fuzz_settings.py)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pint
from hypothesis import strategies as st

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
#: The array dtypes a store must hold, written out here (not imported from src) so that a
#: dtype src stops supporting fails the tests that use it.
ARRAY_DTYPES = [
    np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float32",
        "float64",
    )
]
STORABLE_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))


def assert_identical(got: Any, want: Any, where: str = "value") -> None:
    """Same type, dtype, shape and bits, recursively (NaN payloads and -0.0 included)."""
    assert type(got) is type(want), f"{where}: {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, pint.Quantity):
        assert got.units == want.units, where
        assert_identical(got.magnitude, want.magnitude, f"{where}.magnitude")
    elif isinstance(want, np.ndarray | np.generic):
        assert got.dtype == want.dtype and got.shape == want.shape, (where, got, want)
        assert got.tobytes() == want.tobytes(), (where, got, want)
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), (where, got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            assert_identical(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_identical(g, w, f"{where}[{i}]")
    else:
        assert got == want, (where, got, want)
