"""Dtype rules shared by the numeric codecs (scalars, sequences, arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layout, Spec

__all__ = [
    "PLAIN_ARRAY_SUBCLASSES",
    "SUPPORTED_DTYPES",
    "as_plain_array",
    "check_array_dtype",
    "check_castable",
    "logical_to_storage",
    "numeric_spec",
    "read_back",
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
#: The ndarray subclasses known to hold nothing but their numbers: stored as plain arrays.
#: Any other subclass may hold more (a masked array's mask, astropy's or unyt's units) that
#: a plain array would silently drop, so it is refused.
PLAIN_ARRAY_SUBCLASSES: tuple[type, ...] = (np.memmap, np.matrix)


def as_plain_array(value: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The ndarray subclass ``value`` as a plain ndarray (a view, not a copy).

    Raises TypeError unless ``value``'s type is one of ``PLAIN_ARRAY_SUBCLASSES``. Callers
    test ``type(value) is np.ndarray`` first, so plain arrays never come here.
    """
    cls = type(value)
    if cls in PLAIN_ARRAY_SUBCLASSES:
        return np.asarray(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"cannot store a {name}: its mask would be lost; store value.filled(fill_value), "
            "or its data and its mask (value.mask) as two arrays"
        )
    raise TypeError(
        f"cannot store a {name}: an ndarray subclass may hold more than its numbers (units, "
        "a mask...), which a plain array would drop; writebehind stores plain numpy arrays, "
        "np.memmap and np.matrix (as plain arrays): store np.asarray(value) if its numbers "
        "are all it holds"
    )


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


def check_castable(
    src: np.dtype[Any], logical: np.dtype[Any], path_hint: str = "", values: Any = None
) -> None:
    """Raise TypeError unless values of dtype ``src`` fit dtype ``logical`` without loss.

    numpy calls int64 -> float64 safe, but ints beyond 2**53 change on the way: for such a
    cast the ``values`` themselves are checked (ValueError for one that would change), and
    without ``values`` the cast is refused.
    """
    if src == logical:
        return
    if logical == _BOOL or src == _BOOL or not np.can_cast(src, logical, "safe"):
        raise TypeError(
            f"cannot store {src} values in a variable of dtype {logical_name(logical)} "
            "without loss; convert them explicitly, or store them in another variable"
        )
    if src.kind in "iu" and logical.kind == "f" and src.itemsize * 8 > _mantissa_bits(logical):
        if values is None:
            raise TypeError(
                f"cannot store {src} values in a variable of dtype {logical_name(logical)} "
                f"exactly (ints beyond 2**{_mantissa_bits(logical)} would change); convert "
                "them explicitly if that is fine, or store them in another variable"
            )
        arr = np.asarray(values)
        limit = 1 << _mantissa_bits(logical)
        beyond = arr > limit if src.kind == "u" else (arr > limit) | (arr < -limit)
        for item in arr[beyond].tolist():
            check_int_exact_in_float(int(item), logical)


def _mantissa_bits(dtype: np.dtype[Any]) -> int:
    return int(np.finfo(dtype).nmant) + 1


def check_int_exact_in_float(value: int, logical: np.dtype[Any]) -> None:
    """Raise ValueError unless the int ``value`` is exactly a ``logical`` float."""
    limit = 1 << _mantissa_bits(logical)
    if -limit <= value <= limit:
        return
    with np.errstate(over="ignore"):
        try:
            as_float = logical.type(value)
        except OverflowError:
            as_float = logical.type(np.inf)
    stored = int(as_float) if np.isfinite(as_float) else None
    if stored != value:
        digits = str(value)
        shown = digits if len(digits) <= 30 else f"{digits[:12]}... ({len(digits)} digits)"
        raise ValueError(
            f"cannot store the int {shown} as {logical} exactly (it would read back as "
            f"{stored if stored is not None else 'inf'}): store such ints in an int variable"
        )


def view_logical(raw: np.ndarray[Any, Any], logical: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The stored array ``raw`` as the user's dtype (int8 storage back to bool)."""
    if logical == _BOOL:
        return raw.astype(bool)
    if raw.dtype != logical:
        return raw.astype(logical)
    return raw


def numeric_spec(codec: str, python: str, logical: np.dtype[Any], shape: tuple[int, ...]) -> Spec:
    """The spec of a numeric codec's values of dtype ``logical`` and ``shape``."""
    return Spec(codec, python, storage_layout(logical, shape), logical_name(logical))


def read_back(raw: Any, spec: Spec) -> np.ndarray[Any, Any]:
    """What a numeric variable of ``spec`` holds (``raw``), as an array of its logical dtype."""
    return view_logical(np.asarray(raw), logical_from_name(spec.logical_dtype))
