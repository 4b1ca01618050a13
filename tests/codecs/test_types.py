"""Each read returns what was written, as the same Python type (issue 2's types table)."""

from __future__ import annotations

import numpy as np
import pint
import pytest
from fuzz_values import ARRAY_DTYPES

# Store behaviour, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends

UREG = pint.get_application_registry()


WRITTEN_VALUES = {
    "bool": True,
    "int": -(2**62),
    "float": 2.5,
    "np_float32": np.float32(1.25),
    "np_int16": np.int16(-7),
    "np_bool": np.bool_(False),
    "str": "héllo wörld",
    "empty_str": "",
    "bytes": b"\x00\x01binary\xff",
    "empty_bytes": b"",
    "list": [1, 2, 3],
    "nested_list": [[1.5, 2.5], [3.5, 4.5]],
    "tuple": (1.0, 2.0),
    "nested_tuple": ((1, 2), (3, 4)),
    "empty_list": [],
    "dict": {
        "a": 1,
        "b": (1, "x"),
        "c": np.arange(4, dtype=np.int16),
        "d": None,
        "e": {"nested": [1, 2.5, "s", b"b"]},
        "f": 3 * UREG.nanometer,
        "g": np.float32(0.5),
    },
    "quantity_scalar": 300 * UREG.kelvin,
    "quantity_float": 1.5 * UREG.nanometer**2 / UREG.picosecond,
    "quantity_array": np.arange(6.0).reshape(2, 3) * UREG.angstrom,
}


def assert_same(got, want):
    """Equal value and the same Python type, recursively (arrays: dtype and shape too)."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, pint.Quantity):
        assert got.units == want.units
        assert_same(got.magnitude, want.magnitude)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            assert_same(got[key], want[key])
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same(g, w)
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype and got == want
    else:
        assert got == want


@pytest.mark.parametrize("name", sorted(WRITTEN_VALUES))
def test_written_value_reads_back_as_same_type(store, name):
    store[name].write(WRITTEN_VALUES[name])
    assert_same(store[name].read(), WRITTEN_VALUES[name])


@pytest.mark.parametrize("name", sorted(WRITTEN_VALUES))
def test_written_value_reads_back_after_reopen(store, nc_path, reopen, name):
    store[name].write(WRITTEN_VALUES[name])
    store.close()
    with reopen(nc_path) as again:
        assert_same(again[name].read(), WRITTEN_VALUES[name])


@pytest.mark.parametrize("dtype", ARRAY_DTYPES)
def test_array_keeps_dtype_and_shape(store, nc_path, reopen, dtype):
    value = (np.arange(24) % 3).astype(dtype).reshape(2, 3, 4)
    store.arr.write(value)
    store.close()
    with reopen(nc_path) as again:
        got = again.arr.read()
    assert type(got) is np.ndarray  # never a masked array
    assert_same(got, value)


@pytest.mark.parametrize("dtype", ARRAY_DTYPES)
def test_appended_arrays_stack_with_same_dtype(store, dtype):
    frames = [(np.arange(6) + i).astype(dtype).reshape(2, 3) for i in range(5)]
    for frame in frames:
        store.frames.append(frame)
    got = store.frames.read()
    assert got.dtype == np.dtype(dtype) and got.shape == (5, 2, 3)
    np.testing.assert_array_equal(got, np.stack(frames))


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([True, False, True], bool), ([1, -2, 3], np.int64), ([0.5, 1.5, 2.5], np.float64)],
)
def test_appended_python_scalars_read_as_1d_array(store, values, dtype):
    for value in values:
        store.s.append(value)
    got = store.s.read()
    assert type(got) is np.ndarray and got.dtype == dtype
    assert got.tolist() == values


def test_appended_strings_read_as_list_of_str(store):
    for value in ["a", "", "ünïcode", "x" * 1000]:
        store.s.append(value)
    assert store.s.read() == ["a", "", "ünïcode", "x" * 1000]


def test_appended_bytes_read_as_list_of_bytes(store):
    for value in [b"a", b"", b"\x00\xff"]:
        store.b.append(value)
    assert store.b.read() == [b"a", b"", b"\x00\xff"]


def test_appended_lists_read_as_list_of_lists(store):
    store.l.append([1, 2])
    store.l.append([3, 4])
    assert_same(store.l.read(), [[1, 2], [3, 4]])


def test_appended_tuples_read_as_list_of_tuples(store):
    store.t.append((1.0, 2.0))
    store.t.append((3.0, 4.0))
    assert_same(store.t.read(), [(1.0, 2.0), (3.0, 4.0)])


def test_appended_dicts_read_as_list_of_dicts(store):
    dicts = [{"step": i, "x": np.full(2, i, dtype=np.int8)} for i in range(3)]
    for d in dicts:
        store.checkpoints.append(d)
    assert_same(store.checkpoints.read(), dicts)


def test_appended_quantities_read_as_quantity_of_stacked_array(store):
    for i in range(4):
        store.energy.append(float(i) * UREG.kilojoule / UREG.mole)
    got = store.energy.read()
    assert isinstance(got, pint.Quantity)
    assert got.units == UREG.kilojoule / UREG.mole
    np.testing.assert_array_equal(got.magnitude, [0.0, 1.0, 2.0, 3.0])


def test_appended_array_quantities_stack(store):
    for i in range(3):
        store.pos.append(np.full((2, 3), i, dtype=np.float32) * UREG.nanometer)
    got = store.pos.read()
    assert got.magnitude.shape == (3, 2, 3) and got.magnitude.dtype == np.float32
    assert got.units == UREG.nanometer


def test_compatible_units_are_converted_to_the_stored_ones(store):
    store.length.append(1.0 * UREG.nanometer)
    store.length.append(5.0 * UREG.angstrom)
    got = store.length.read()
    assert got.units == UREG.nanometer
    np.testing.assert_allclose(got.magnitude, [1.0, 0.5])


def test_units_of_another_dimensionality_raise_at_the_call(store):
    store.length.append(1.0 * UREG.nanometer)
    with pytest.raises(pint.DimensionalityError):
        store.length.append(1.0 * UREG.second)
    assert len(store.length) == 1


def test_quantities_decode_with_the_store_registry(open_store, nc_path):

    other = pint.UnitRegistry()
    with open_store(nc_path, "w", unit_registry=other) as store:
        store.t.write(3.0 * UREG.kelvin)
        got = store.t.read()
    assert got._REGISTRY is other
    assert got == other.Quantity(3.0, "kelvin")


def test_empty_array_entries_round_trip(store):
    store.empty.append(np.zeros((0, 3)))
    store.empty.append(np.zeros((0, 3)))
    got = store.empty.read()
    assert got.shape == (2, 0, 3)


def test_fixed_empty_array_round_trips(store, nc_path, reopen):
    store.e.write(np.zeros((2, 0), dtype=np.int32))
    store.close()
    with reopen(nc_path) as again:
        got = again.e.read()
    assert got.shape == (2, 0) and got.dtype == np.int32


def test_nan_and_infinities_round_trip(store):
    value = np.array([np.nan, np.inf, -np.inf, 0.0])
    store.x.write(value)
    np.testing.assert_array_equal(store.x.read(), value)


def test_non_native_byte_order_is_stored_by_value(store):
    value = np.arange(4, dtype=">i4")
    store.x.write(value)
    got = store.x.read()
    np.testing.assert_array_equal(got, value)
    assert got.dtype == np.dtype("int32")


def test_entries_of_either_byte_order_append_to_one_variable_read_native(store):
    store.x.append(np.arange(3, dtype=">f8"))
    store.x.append(np.arange(3, dtype="<f8"))
    got = store.x.read()
    assert got.dtype == np.dtype("float64") and got.dtype.isnative
    np.testing.assert_array_equal(got, [[0, 1, 2], [0, 1, 2]])


def test_a_big_endian_array_in_a_dict_reads_back_native(store):
    store.d.write({"x": np.arange(3, dtype=">i4")})
    assert_same(store.d.read()["x"], np.arange(3, dtype=np.int32))


# -- ndarray subclasses ------------------------------------------------------------------
class Tagged(np.ndarray):
    """An ndarray subclass writebehind cannot know holds only its numbers (as astropy's)."""


def tagged(values):
    return np.asarray(values, dtype=np.float64).view(Tagged)


@pytest.fixture
def memmap(tmp_path):
    array = np.memmap(tmp_path / "frame.dat", dtype=np.float32, mode="w+", shape=(2, 3))
    array[:] = np.arange(6).reshape(2, 3)
    return array


def test_a_memmap_written_reads_back_as_a_plain_array(store, nc_path, reopen, memmap):
    store.x.write(memmap)
    assert_same(store.x.read(), np.arange(6, dtype=np.float32).reshape(2, 3))
    store.close()
    with reopen(nc_path) as again:
        assert_same(again.x.read(), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_memmaps_append_to_a_variable_of_plain_arrays(store, memmap):
    store.x.append(np.zeros((2, 3), dtype=np.float32))
    store.x.append(memmap)
    store.x.append(memmap[:, :])  # slicing a memmap gives a memmap
    got = store.x.read()
    assert type(got) is np.ndarray and got.dtype == np.float32
    np.testing.assert_array_equal(got[1:], [memmap, memmap])


def test_a_memmap_is_snapshot_at_the_call(store, memmap):
    store.x.append(memmap)
    memmap[:] = -1
    np.testing.assert_array_equal(store.x.read()[0], np.arange(6).reshape(2, 3))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_a_matrix_is_stored_as_a_plain_2d_array(store):
    store.m.write(np.matrix([[1, 2], [3, 4]]))
    assert_same(store.m.read(), np.array([[1, 2], [3, 4]]))


def test_a_memmap_inside_a_dict_reads_back_as_a_plain_array(store, memmap):
    store.d.write({"frame": memmap})
    assert_same(store.d.read()["frame"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_a_quantity_of_a_memmap_reads_back_with_a_plain_magnitude(store, memmap):
    store.q.append(UREG.Quantity(memmap, "nanometer"))
    got = store.q.read()
    assert type(got.magnitude) is np.ndarray and got.units == UREG.nanometer
    np.testing.assert_array_equal(got.magnitude, [memmap])


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.x.write(tagged([1.0])),
        lambda s: s.x.append(tagged([1.0])),
        lambda s: s.d.write({"a": tagged([1.0])}),
    ],
    ids=["write", "first append", "in a dict"],
)
def test_an_ndarray_subclass_that_may_hold_more_than_numbers_is_refused(store, call):
    with pytest.raises(TypeError, match=r"Tagged.*np\.asarray\(value\)"):
        call(store)
    assert list(store) == []


def test_a_later_value_of_an_unknown_ndarray_subclass_is_refused(store):
    store.x.append(np.zeros(1))
    with pytest.raises(TypeError, match="Tagged"):
        store.x.append(tagged([1.0]))
    assert len(store.x) == 1


def test_a_masked_array_is_refused_naming_its_mask(store):
    with pytest.raises(TypeError, match="mask"):
        store.x.write(np.ma.masked_array([1.0, 2.0], mask=[0, 1]))
    assert "x" not in store


def test_mixed_int_and_float_list_is_stored_as_floats(store):
    store.l.write([1, 2.5])
    assert_same(store.l.read(), [1.0, 2.5])


@pytest.mark.parametrize("value", [[True, 2], [1.5, False], [[True], [np.int64(3)]]])
def test_a_list_mixing_bools_with_numbers_is_refused(store, value):
    with pytest.raises(TypeError, match="mixes bools"):
        store.l.write(value)
    assert "l" not in store


def test_an_int_a_float_list_cannot_hold_exactly_is_refused(store):
    with pytest.raises(ValueError, match="9007199254740993"):
        store.l.write([2**53 + 1, 0.5])
    store.m.append([0.5, 1.5])
    with pytest.raises(ValueError, match="9007199254740993"):
        store.m.append([2**53 + 1, 1])
    assert len(store.m) == 1 and "l" not in store


def test_ints_beyond_int64_are_stored_as_uint64_not_floats(store, nc_path, reopen):
    store.l.write([1, 2**63])
    store.m.append((2**64 - 1, 0))
    store.m.append((1, 2))  # Python ints of an unsigned variable
    store.close()
    with reopen(nc_path) as again:
        assert_same(again.l.read(), [1, 2**63])
        assert again.m.read() == [(2**64 - 1, 0), (1, 2)]


def test_ints_no_64_bit_int_holds_together_are_refused(store):
    with pytest.raises(ValueError, match="neither int64 nor uint64"):
        store.l.write([-1, 2**64 - 1])


@pytest.mark.parametrize(
    "value",
    [2**53 + 1, np.int64(2**53 + 1), np.array([0, 2**53 + 1]), np.array([2**64 - 1, 0], np.uint64)],
    ids=["int", "numpy-int64", "int64-array", "uint64-array"],
)
def test_an_int_a_float_variable_cannot_hold_exactly_is_refused(store, value):
    first = np.zeros(np.shape(value)) if np.ndim(value) else 0.5
    store.x.append(first)
    with pytest.raises(ValueError, match="exactly"):
        store.x.append(value)
    assert len(store.x) == 1


def test_ints_a_float_variable_holds_exactly_are_stored(store):
    store.x.append(np.zeros(3))
    store.x.append(np.array([1, 2**53, -(2**60)]))  # int64, every value exact in float64
    store.f.append(np.float32(0.5))
    store.f.append(2**24)
    assert store.x.read()[1].tolist() == [1.0, 2.0**53, -(2.0**60)]
    with pytest.raises(ValueError, match="16777217"):
        store.f.append(2**24 + 1)
    assert store.f.read().tolist() == [0.5, 2.0**24]
