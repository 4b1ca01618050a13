"""Appends of scalars: the checks hold once the variable's plain type skips the encoder.

A value of exactly a scalar variable's plain type (a float into a float64 variable) is
staged without going through the encoder (``codecs.unchecked_type``); every other value is
still checked at the call. Tests that ask for ``face_store`` run on both faces.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from writebehind import BackgroundWriteError, NetCDFBackend, StorageInterface, StoreClosedError

# Store behaviour, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends


@pytest.mark.parametrize(
    ("later", "error"),
    [
        ("1.5", TypeError),
        (np.zeros(2), TypeError),  # another shape
        (True, TypeError),
        (None, TypeError),
        (np.zeros(()), TypeError),  # a 0-d array
    ],
    ids=["str", "array", "bool", "none", "0-d array"],
)
def test_a_value_of_another_kind_after_floats_raises_at_the_call(face_store, later, error):
    face_store.x.append(0.5)
    face_store.x.append(1.5)
    with pytest.raises(error):
        face_store.x.append(later)
    assert face_store.x.read().tolist() == [0.5, 1.5]


def test_nan_and_infinities_append_to_a_float_variable(face_store):
    values = [0.5, math.nan, math.inf, -math.inf]
    for value in values:
        face_store.x.append(value)
    np.testing.assert_array_equal(face_store.x.read(), np.array(values))


def test_a_float_subclass_is_stored_as_a_plain_float(face_store):
    class Energy(float):
        pass

    face_store.x.append(0.5)
    face_store.x.append(Energy(2.5))
    assert face_store.x.read().tolist() == [0.5, 2.5]


def test_an_int_beyond_the_variables_dtype_raises_at_the_call(face_store):
    face_store.x.append(1)
    with pytest.raises(ValueError, match="does not fit"):
        face_store.x.append(2**63)
    assert face_store.x.read().tolist() == [1]


def test_a_float_into_a_float32_variable_raises_at_the_call(face_store):
    face_store.x.append(np.float32(0.5))
    face_store.x.append(np.float32(1.5))  # its own type: staged without the encoder
    with pytest.raises(TypeError, match="without loss"):
        face_store.x.append(1.5)
    assert face_store.x.read().tolist() == [0.5, 1.5]


def test_a_float_into_an_int_variable_raises_at_the_call(face_store):
    face_store.x.append(1)
    with pytest.raises(TypeError, match="float"):
        face_store.x.append(1.5)


def test_a_bool_variable_takes_bools_and_refuses_ints(face_store):
    face_store.x.append(True)
    face_store.x.append(False)
    with pytest.raises(TypeError):
        face_store.x.append(1)
    assert face_store.x.read().tolist() == [True, False]


def test_a_float_appended_to_a_closed_store_raises_store_closed(face_store):
    face_store.x.append(0.5)
    face_store.close()
    with pytest.raises(StoreClosedError):
        face_store.x.append(1.5)


class FailingDriver(NetCDFBackend):
    def write_entries(self, path, start, entries):
        raise OSError(28, "No space left on device")


def test_a_float_appended_after_a_background_failure_raises_it(nc_path):
    store = StorageInterface(FailingDriver(str(nc_path), "w"))
    store.x.append(0.5)
    with pytest.raises(BackgroundWriteError):
        store.flush()
    with pytest.raises(BackgroundWriteError):
        store.x.append(1.5)
    with pytest.raises(BackgroundWriteError):
        store.close()
