"""Rectangular lists and tuples of numbers, given back as the same container."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numeric import (
    check_array_dtype,
    check_castable,
    logical_from_name,
    logical_name,
    storage_layout,
    view_logical,
)
from .arrays import shape_error
from .base import Codec, Encoder, Spec

__all__ = ["SequenceCodec"]

_NUMBER_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)


def as_number_array(value: list[Any] | tuple[Any, ...]) -> np.ndarray[Any, Any]:
    """``value`` as an ndarray, or TypeError if it is ragged or holds non-numbers."""
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError) as exc:
        raise TypeError(
            f"cannot store this {type(value).__name__}: it must be a rectangular "
            f"sequence of numbers ({exc})"
        ) from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(
            f"cannot store a {type(value).__name__} whose items are "
            f"{'of mixed or unsupported types' if arr.dtype == object else arr.dtype}: "
            "only rectangular sequences of bool, int and float are stored as sequences"
        )
    check_array_dtype(arr.dtype, f"{type(value).__name__}")
    return arr


def _to_container(arr: np.ndarray[Any, Any], container: type) -> Any:
    if container is list:
        return arr.tolist()
    if arr.ndim == 0:
        return arr.item()
    return tuple(_to_container(sub, tuple) for sub in arr) if arr.ndim > 1 else tuple(arr.tolist())


class SequenceCodec(Codec):
    name = "sequence"

    def spec_for(self, value: Any) -> Spec:
        if type(value) not in (list, tuple):
            raise TypeError(f"not a list or tuple: {type(value).__name__}")
        arr = as_number_array(value)
        logical = check_array_dtype(arr.dtype)
        return Spec(
            self.name,
            type(value).__name__,
            storage_layout(logical, arr.shape),
            logical_name(logical),
        )

    def encoder(self, spec: Spec) -> Encoder:
        logical = logical_from_name(spec.logical_dtype)
        shape = spec.layout.shape
        container = type(()) if spec.python == "tuple" else list

        def encode(value: Any) -> Any:
            if type(value) is not container:
                raise TypeError(
                    f"cannot store a {type(value).__name__} in a variable of {container.__name__}s"
                )
            arr = as_number_array(value)
            if arr.shape != shape:
                raise shape_error(arr.shape, shape)
            # Python ints and floats mix freely in a float variable; anything else must
            # cast without loss.
            if arr.dtype != logical and not (logical.kind == "f" and arr.dtype.kind in "iu"):
                check_castable(arr.dtype, logical)
            return arr

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        arr = view_logical(np.asarray(raw), logical_from_name(spec.logical_dtype))
        return _to_container(arr.reshape(spec.layout.shape), _container(spec))

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        arr = view_logical(np.asarray(raw), logical_from_name(spec.logical_dtype))
        container = _container(spec)
        return [_to_container(entry, container) for entry in arr]


def _container(spec: Spec) -> type:
    return tuple if spec.python == "tuple" else list
