"""Errors arrive at the call that caused them (issue 2, "Errors" and "Types").

Tests that ask for ``face_store`` or ``open_face`` run on the sync and the async face
(tests/faces.py).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import writebehind
from writebehind import BackgroundWriteError, NetCDFBackend, NetCDFIODriver, StorageInterface


def test_read_of_missing_variable_raises_key_error_naming_the_path(face_store):
    with pytest.raises(KeyError, match="traj/nothing"):
        face_store.traj.nothing.read()


def test_reading_a_missing_file_raises_and_creates_no_file(nc_path):
    with StorageInterface(NetCDFIODriver(str(nc_path))) as store, pytest.raises(KeyError):
        store.x.read()
    assert not nc_path.exists()


@pytest.mark.parametrize("mode", ["a", "r"])
def test_opening_a_missing_file_in_mode_a_or_r_raises_file_not_found(nc_path, mode):
    with pytest.raises(FileNotFoundError):
        StorageInterface(NetCDFIODriver(str(nc_path), mode))
    assert not nc_path.exists()


def test_write_at_index_of_missing_variable_raises_oserror(face_store):
    with pytest.raises(OSError, match="Cannot write to a specific index for data that does not"):
        face_store.x.write(1, at_index=0)


def test_write_at_index_beyond_length_raises_value_error(face_store):
    face_store.x.append(1)
    face_store.x.append(2)
    with pytest.raises(ValueError, match="maximum length of the appended data of 2"):
        face_store.x.write(3, at_index=2)
    with pytest.raises(ValueError, match="of 2"):
        face_store.x.write(3, at_index=-3)


def test_write_without_index_on_appended_variable_raises_value_error(face_store):
    face_store.x.append(1)
    with pytest.raises(ValueError, match="append"):
        face_store.x.write(2)


def test_append_to_written_variable_raises_value_error(face_store):
    face_store.x.write(1)
    with pytest.raises(ValueError, match="write"):
        face_store.x.append(2)


def test_using_a_variable_as_a_group_raises_attribute_error(face_store):
    face_store.x.write(1)
    with pytest.raises(AttributeError):
        face_store.x.child.write(2)


def test_using_a_group_as_a_variable_raises_attribute_error(face_store):
    face_store.g.x.write(1)
    with pytest.raises(AttributeError):
        face_store.g.write(2)
    with pytest.raises(AttributeError):
        face_store.g.read()


@pytest.mark.parametrize(
    "value",
    [{1, 2}, object(), [[1, 2], [3]], np.ones(2, dtype=complex), [1, "a"], {1: "int key"}],
    ids=["set", "object", "ragged", "complex", "mixed-list", "int-key-dict"],
)
def test_unsupported_value_raises_type_error_and_enqueues_nothing(face_store, value):
    before = face_store.stats().operations_enqueued
    with pytest.raises(TypeError):
        face_store.x.write(value)
    with pytest.raises(TypeError):
        face_store.y.append(value)
    assert face_store.stats().operations_enqueued == before
    assert "x" not in face_store and "y" not in face_store


def test_entry_of_another_shape_raises_value_error(face_store):
    face_store.x.append(np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        face_store.x.append(np.zeros(4))
    assert len(face_store.x) == 1


def test_entry_of_lossy_dtype_raises_type_error(face_store):
    face_store.x.append(np.zeros(3, dtype=np.int32))
    with pytest.raises(TypeError, match="without loss"):
        face_store.x.append(np.zeros(3, dtype=np.float64))


def test_entry_of_safe_dtype_is_accepted_and_cast(face_store):
    face_store.x.append(np.zeros(3, dtype=np.float64))
    face_store.x.append(np.ones(3, dtype=np.int16))
    got = face_store.x.read()
    assert got.dtype == np.float64 and got[1].tolist() == [1.0, 1.0, 1.0]


def test_float_into_int_scalar_variable_raises_type_error(face_store):
    face_store.x.append(1)
    with pytest.raises(TypeError):
        face_store.x.append(1.5)


def test_value_of_another_kind_raises_type_error(face_store):
    face_store.x.append("a")
    with pytest.raises(TypeError):
        face_store.x.append(1)


def test_quantity_into_plain_variable_raises_type_error(face_store, ureg):
    face_store.x.append(1.0)
    with pytest.raises(TypeError):
        face_store.x.append(1.0 * ureg.meter)


def test_plain_number_into_quantity_variable_raises_type_error(face_store, ureg):
    face_store.x.append(1.0 * ureg.meter)
    with pytest.raises(TypeError, match="units"):
        face_store.x.append(1.0)


def test_integer_beyond_64_bits_raises_value_error(face_store):
    with pytest.raises(ValueError):
        face_store.x.write(2**70)


def test_str_with_nul_raises_value_error(face_store):
    with pytest.raises(ValueError, match="NUL"):
        face_store.x.write("a\x00b")


def test_invalid_name_raises_value_error_at_the_call(face_store):
    with pytest.raises(ValueError):
        face_store["bad/"].write(1)
    with pytest.raises(ValueError):
        face_store["trailing space "].write(1)
    with pytest.raises(ValueError):
        face_store["-leading-dash"].write(1)


def test_writes_through_read_only_store_raise_at_the_call(face_store, nc_path, open_face):
    face_store.x.write(1)
    face_store.close()
    with open_face(nc_path, "r") as again:
        with pytest.raises(writebehind.ReadOnlyError):
            again.x.write(2)
        with pytest.raises(writebehind.ReadOnlyError):  # a PermissionError
            again.y.append(2)
        with pytest.raises(PermissionError):
            again.add_metadata("a", 1)
        assert again.x.read() == 1


class FailingDriver(NetCDFBackend):
    def write_entries(self, path, start, entries):
        raise OSError(28, "No space left on device")


def test_background_failure_raises_on_the_next_call_with_cause(nc_path):
    store = StorageInterface(FailingDriver(str(nc_path), "w"))
    store.x.append(1.0)
    with pytest.raises(BackgroundWriteError) as info:
        store.flush()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.path == "x" and info.value.operation == "append"
    assert "x" in str(info.value)
    with pytest.raises(BackgroundWriteError):
        store.x.append(2.0)
    with pytest.raises(BackgroundWriteError):
        store.close()
    store.close()  # the second close does not raise again: the file is closed
    assert store.closed


def test_background_failure_is_sticky(nc_path):
    store = StorageInterface(FailingDriver(str(nc_path), "w"))
    store.x.append(1.0)
    for _ in range(3):
        with pytest.raises(BackgroundWriteError):
            store.flush()
    with pytest.raises(BackgroundWriteError):
        store.close()


def test_background_failure_counts_unwritten_operations(nc_path):
    store = StorageInterface(FailingDriver(str(nc_path), "w"))
    store.x.append(1.0)
    store.y.write(2.0)  # creating y (and its first value) goes ahead of x's data...
    store.y.write(3.0)  # ...but data keeps its order: this comes after the failed append
    with pytest.raises(BackgroundWriteError) as info:
        store.close()
    assert info.value.unwritten >= 1


def test_not_a_netcdf_file_raises_oserror(tmp_path):
    path = tmp_path / "junk.nc"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(OSError, match="NetCDF"):
        StorageInterface(NetCDFIODriver(str(path), "r"))


def test_bad_access_mode_raises_value_error(nc_path):
    with pytest.raises(ValueError, match="access_mode"):
        NetCDFIODriver(str(nc_path), "x")
