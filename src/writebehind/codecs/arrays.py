"""numpy arrays of bool, integers and floats."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numeric import (
    as_plain_array,
    check_array_dtype,
    check_castable,
    logical_from_name,
    numeric_spec,
    read_back,
)
from .base import Codec, Encoder, Spec

__all__ = ["ArrayCodec"]


def shape_error(got: tuple[int, ...], want: tuple[int, ...]) -> ValueError:
    return ValueError(
        f"shape {got} does not match the variable's entry shape {want}, fixed by its first value"
    )


class ArrayCodec(Codec):
    name = "ndarray"

    def spec_for(self, value: Any) -> Spec:
        if type(value) is not np.ndarray:
            if not isinstance(value, np.ndarray):
                raise TypeError(f"not an ndarray: {type(value).__name__}")
            value = as_plain_array(value)
        logical = check_array_dtype(value.dtype)
        return numeric_spec(self.name, "ndarray", logical, value.shape)

    def encoder(self, spec: Spec) -> Encoder:
        logical = logical_from_name(spec.logical_dtype)
        shape = spec.layout.shape

        def encode(value: Any) -> Any:
            if type(value) is not np.ndarray:  # the slow path: plain arrays skip it
                if not isinstance(value, np.ndarray):
                    raise TypeError(
                        f"cannot store a {type(value).__name__} in a variable of arrays"
                    )
                value = as_plain_array(value)
            if value.shape != shape:
                raise shape_error(value.shape, shape)
            if value.dtype != logical:
                check_castable(check_array_dtype(value.dtype), logical, values=value)
            return value

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        out = read_back(raw, spec)
        return out.reshape(spec.layout.shape)

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return read_back(raw, spec)
