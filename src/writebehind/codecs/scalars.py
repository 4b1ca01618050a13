"""bool, int, float and numpy scalars."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numeric import (
    check_array_dtype,
    check_castable,
    check_int_exact_in_float,
    logical_from_name,
    logical_name,
    numeric_spec,
    read_back,
)
from .base import Codec, Encoder, Spec

__all__ = ["ScalarCodec"]

_INT64 = np.iinfo(np.int64)
_PYTHON_DTYPES = {"bool": np.dtype(bool), "int": np.dtype(np.int64), "float": np.dtype(np.float64)}
SCALAR_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)


def _check_int_range(value: int, logical: np.dtype[Any]) -> None:
    info = np.iinfo(logical)
    if not info.min <= value <= info.max:
        raise ValueError(
            f"the integer {value} does not fit the variable's dtype {logical} "
            f"(range {info.min}..{info.max})"
        )


class ScalarCodec(Codec):
    name = "scalar"

    def spec_for(self, value: Any) -> Spec:
        if isinstance(value, np.bool_ | np.integer | np.floating):  # first: np.float64 is a float
            python, logical = "numpy", check_array_dtype(value.dtype, "scalar")
        elif isinstance(value, bool):
            python, logical = "bool", _PYTHON_DTYPES["bool"]
        elif isinstance(value, int):
            python, logical = "int", _PYTHON_DTYPES["int"]
            _check_int_range(value, logical)
        elif isinstance(value, float):
            python, logical = "float", _PYTHON_DTYPES["float"]
        else:
            raise TypeError(f"not a scalar: {type(value).__name__}")
        return numeric_spec(self.name, python, logical, ())

    def encoder(self, spec: Spec) -> Encoder:
        logical = logical_from_name(spec.logical_dtype)
        kind = logical.kind

        def encode(value: Any) -> Any:
            cls = type(value)
            if cls is float:
                if kind != "f":
                    raise TypeError(f"cannot store a float in a variable of dtype {logical}")
                if logical.itemsize < 8:
                    check_castable(np.dtype(np.float64), logical)
                return value
            if cls is int:
                if kind in "iu":
                    _check_int_range(value, logical)
                elif kind == "f":
                    check_int_exact_in_float(value, logical)
                else:
                    raise TypeError(
                        f"cannot store an int in a variable of dtype {logical_name(logical)}"
                    )
                return value
            if cls is bool:
                if kind != "b":
                    raise TypeError(f"cannot store a bool in a variable of dtype {logical}")
                return value
            if isinstance(value, np.bool_ | np.integer | np.floating):
                check_castable(value.dtype, logical, values=value)
                return value
            if isinstance(value, int | float):  # subclasses such as IntEnum
                return encode(_plain(value))
            raise TypeError(f"cannot store a {cls.__name__} in a variable of {spec.python} scalars")

        return encode

    def unchecked_type(self, spec: Spec) -> type | None:
        # Each mirrors a branch of ``encode`` that returns the value without a check.
        logical = logical_from_name(spec.logical_dtype)
        if spec.python == "float" and logical.kind == "f" and logical.itemsize >= 8:
            return float
        if spec.python == "bool" and logical.kind == "b":
            return bool
        if spec.python == "numpy":  # check_castable(value.dtype, logical): same dtype
            return logical.type
        return None  # an int is checked against the dtype's range

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        logical = logical_from_name(spec.logical_dtype)
        item = np.asarray(raw).reshape(())
        if spec.python == "numpy":
            return logical.type(item)
        if spec.python == "bool":
            return bool(item)
        if spec.python == "int":
            return int(item)
        return float(item)

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return read_back(raw, spec)


def _plain(value: int | float) -> int | float | bool:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return float(value)
