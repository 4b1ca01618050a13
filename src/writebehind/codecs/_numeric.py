"""Dtype rules shared by the numeric codecs (scalars, sequences, arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layout

__all__ = [
    "SUPPORTED_DTYPES",
    "check_array_dtype",
    "check_castable",
    "logical_to_storage",
    "storage_layout",
    "view_logical",
]

#: The dtypes writebehind stores as numbers (bool is stored as int8).
SUPPORTED_DTYPES = frozenset(
    np.dtype(t)
    for t in (
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
)
_BOOL = np.dtype(bool)
_BOOL_STORAGE = np.dtype(np.int8)


def check_array_dtype(dtype: np.dtype[Any], what: str = "array") -> np.dtype[Any]:
    """Return the native-byte-order form of ``dtype``, or raise TypeError if unsupported."""
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    if native not in SUPPORTED_DTYPES:
        raise TypeError(
            f"cannot store a{'n' if what[0] in 'aeiou' else ''} {what} of dtype {dtype}: "
            "writebehind stores bool, int8..int64, uint8..uint64, float32 and float64"
        )
    return native


def logical_to_storage(logical: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype the file holds for values of dtype ``logical``."""
    return _BOOL_STORAGE if logical == _BOOL else logical


def storage_layout(logical: np.dtype[Any], shape: tuple[int, ...]) -> Layout:
    return Layout("numeric", logical_to_storage(logical), shape)


def logical_name(logical: np.dtype[Any]) -> str:
    return "bool" if logical == _BOOL else logical.str


def logical_from_name(name: str) -> np.dtype[Any]:
    return _BOOL if name == "bool" else np.dtype(name)


def check_castable(src: np.dtype[Any], logical: np.dtype[Any], path_hint: str = "") -> None:
    """Raise TypeError unless values of dtype ``src`` fit dtype ``logical`` without loss."""
    if src == logical:
        return
    if logical == _BOOL or src == _BOOL or not np.can_cast(src, logical, "safe"):
        raise TypeError(
            f"cannot store {src} values in a variable of dtype {logical_name(logical)} "
            "without loss; convert them explicitly, or store them in another variable"
        )


def view_logical(raw: np.ndarray[Any, Any], logical: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The stored array ``raw`` as the user's dtype (int8 storage back to bool)."""
    if logical == _BOOL:
        return raw.astype(bool)
    if raw.dtype != logical:
        return raw.astype(logical)
    return raw
