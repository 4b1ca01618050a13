"""Rectangular lists and tuples of numbers, given back as the same container."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numeric import (
    check_array_dtype,
    check_castable,
    check_int_exact_in_float,
    logical_from_name,
    numeric_spec,
    read_back,
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
    if arr.dtype.kind != "b" and arr.size:
        return _kept_exactly(value, arr)
    return arr


def _leaves(value: Any) -> list[Any]:
    """The numbers of a nested list or tuple, in order."""
    if not any(type(item) in (list, tuple) for item in value):
        return list(value)
    out: list[Any] = []
    for item in value:
        out.extend(_leaves(item) if type(item) in (list, tuple) else (item,))
    return out


def _kept_exactly(value: list[Any] | tuple[Any, ...], arr: np.ndarray[Any, Any]) -> Any:
    """``arr``, once sure numpy's promotion changed no item of ``value``.

    Refuses bools among numbers (they would be stored, and read back, as numbers) and ints
    that a float array cannot hold exactly. Ints among floats that it holds exactly are
    stored as floats (``[1, 2.5]`` reads back ``[1.0, 2.5]``); ints alone beyond int64 are
    stored as uint64, not as floats.
    """
    leaves = _leaves(value)
    kinds = {type(item) for item in leaves}
    if len(kinds) == 1 and arr.dtype.kind != "f":
        return arr  # one type, ints or unsigned ints: stored as they are
    if any(issubclass(kind, bool | np.bool_) for kind in kinds):
        raise TypeError(
            f"cannot store a {type(value).__name__} that mixes bools with other numbers: "
            "they would be stored (and read back) as numbers; convert them explicitly"
        )
    if arr.dtype.kind != "f":
        return arr
    if all(issubclass(kind, int | np.integer) for kind in kinds):
        if min(leaves) < 0:
            raise ValueError(
                f"cannot store a {type(value).__name__} of ints from {min(leaves)} to "
                f"{max(leaves)}: neither int64 nor uint64 holds them all"
            )
        return np.asarray(value, dtype=np.uint64)  # numpy made floats of ints over int64
    check_ints_exact_in_float(
        [item for item in leaves if isinstance(item, int | np.integer)], arr.dtype
    )
    return arr


def check_ints_exact_in_float(ints: Any, dtype: np.dtype[Any]) -> None:
    """Raise ValueError unless every int in ``ints`` is exactly a ``dtype`` float."""
    for item in ints:
        check_int_exact_in_float(int(item), dtype)


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
        return numeric_spec(self.name, type(value).__name__, logical, arr.shape)

    def encoder(self, spec: Spec) -> Encoder:
        logical = logical_from_name(spec.logical_dtype)
        shape = spec.layout.shape
        container = _container(spec)

        def encode(value: Any) -> Any:
            arr = _entry_array(value, container)
            if arr.shape != shape:
                raise shape_error(arr.shape, shape)
            # Python ints and floats mix freely in a float variable, as long as the float
            # holds each int exactly; anything else must cast without loss.
            if arr.dtype != logical:
                if logical.kind == "f" and arr.dtype.kind in "iu":
                    check_ints_exact_in_float(arr.ravel().tolist(), logical)
                elif logical.kind == "u" and arr.dtype.kind == "i" and (arr >= 0).all():
                    arr = arr.astype(logical)  # Python ints of a uint64 variable, all >= 0
                else:
                    check_castable(arr.dtype, logical)
            return arr

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        arr = read_back(raw, spec)
        return _to_container(arr.reshape(spec.layout.shape), _container(spec))

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        arr = read_back(raw, spec)
        container = _container(spec)
        return [_to_container(entry, container) for entry in arr]


def _container(spec: Spec) -> type[list[Any] | tuple[Any, ...]]:
    return tuple if spec.python == "tuple" else list


def _entry_array(value: Any, container: type[list[Any] | tuple[Any, ...]]) -> np.ndarray[Any, Any]:
    """``value``, an entry of a variable of ``container`` (list or tuple), as an ndarray."""
    if type(value) is not container:
        raise TypeError(
            f"cannot store a {type(value).__name__} in a variable of {container.__name__}s"
        )
    return as_number_array(value)
