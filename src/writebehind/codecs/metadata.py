"""Metadata values (netCDF attributes): str, int, float, bool, lists of numbers, 1-D arrays.

netCDF has no bool attribute and gives back a one-element array as a scalar, so the Python
type of such values is recorded in the JSON attribute ``writebehind_metadata_types``; a value
reads back as what was given.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .._bookkeeping import TYPES_ATTR
from .._errors import FormatError
from .._paths import _name_problem
from ._numeric import as_plain_array, check_array_dtype
from .base import ATTR_PREFIX, PACKING_ATTRS
from .sequences import as_number_array

__all__ = [
    "TYPES_ATTR",
    "VALUE_ATTRS",
    "check_attr_name",
    "check_variable_attr_name",
    "decode_attrs",
    "encode_attr",
]

_UNPACKED = (
    "writebehind stores values unpacked, and CF readers (xarray) would unpack them again: "
    "append the values themselves"
)
#: The attributes a variable's value owns, with why: set as metadata, they would change
#: what its stored numbers mean, in writebehind's reads (``units``) or any CF reader's.
VALUE_ATTRS = {
    "units": "the value owns its units: append a quantity in the units you want",
    **{name: _UNPACKED for name in PACKING_ATTRS},
}


def check_attr_name(name: object) -> str:
    """Return ``name`` if the user may set an attribute of that name, else raise."""
    if not isinstance(name, str):
        raise TypeError(f"a metadata name must be a str, not {type(name).__name__}")
    if not name or name.startswith("_") or name.startswith(ATTR_PREFIX):
        raise ValueError(
            f"invalid metadata name {name!r}: names must be non-empty and cannot start with "
            f"'_' (reserved by netCDF) or {ATTR_PREFIX!r} (writebehind's bookkeeping)"
        )
    problem = _name_problem(name)  # netCDF's rules for attribute names are its names' rules
    if problem:
        raise ValueError(f"invalid metadata name {name!r}: {problem}")
    return name


def check_variable_attr_name(name: str, path: str) -> None:
    """Raise ValueError if ``name`` is an attribute that the value of variable ``path`` owns.

    A node not written yet is checked too (its first value may make it a variable), so the
    same call is refused before and after the first value; a group takes any such name.
    """
    reason = VALUE_ATTRS.get(name)
    if reason is not None:
        raise ValueError(
            f"cannot set the attribute {name!r} of {path!r} with add_metadata: {reason} "
            f"(a group, once it exists, takes {name!r} as ordinary metadata)"
        )


def encode_attr(name: str, value: Any) -> tuple[Any, str | None]:
    """The stored form of metadata ``value`` and its type tag (None when none is needed).

    Raises TypeError for a value netCDF attributes cannot hold.
    """
    cls = type(value)
    if cls is str:
        if "\x00" in value:
            raise ValueError(f"metadata {name!r}: a str with a NUL character cannot be stored")
        return value, None
    if cls is bool or cls is np.bool_:
        return np.int8(value), "bool"
    if cls is int:
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"metadata {name!r}: the integer {value} does not fit in 64 bits")
        return np.int64(value), None
    if cls is float:
        return np.float64(value), None
    if isinstance(value, np.integer | np.floating):
        check_array_dtype(value.dtype, "scalar")
        return value, "numpy"
    if cls is list or cls is tuple:
        try:  # bools among numbers, ints a float cannot hold: refused, as in variables
            arr = as_number_array(value) if value else np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"metadata {name!r}: {exc}") from None
        if arr.ndim != 1 or arr.dtype.kind not in "biuf":
            raise TypeError(f"metadata {name!r}: a {cls.__name__} must be a flat list of numbers")
        if arr.dtype.kind == "b":
            return arr.astype(np.int8), f"{cls.__name__}:bool"
        return arr, cls.__name__
    if cls is np.ndarray:
        if value.ndim != 1:
            raise TypeError(f"metadata {name!r}: arrays must be 1-D (got shape {value.shape})")
        native = check_array_dtype(value.dtype)
        if native.kind == "b":
            return value.astype(np.int8), "ndarray:bool"
        # A copy in native byte order: what the file gives back, so what every read returns.
        return value.astype(native), "ndarray"
    if isinstance(value, np.ndarray):  # a subclass: stored as a plain array, or refused
        try:
            plain = as_plain_array(value)
        except TypeError as exc:
            raise TypeError(f"metadata {name!r}: {exc}") from None
        return encode_attr(name, plain)
    raise TypeError(
        f"metadata {name!r}: cannot store a {cls.__name__} (metadata may be str, int, float, "
        "bool, a list of numbers or a 1-D array)"
    )


def decode_attrs(attrs: dict[str, Any], hide: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The user's metadata from a node's attributes (bookkeeping left out)."""
    try:
        types = json.loads(attrs.get(TYPES_ATTR, "{}"))
        if not isinstance(types, dict):
            raise ValueError("not a JSON object")
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: [[[[...
        raise FormatError(f"the attribute {TYPES_ATTR} is damaged ({exc})") from exc
    out: dict[str, Any] = {}
    for name, raw in attrs.items():
        if name.startswith(ATTR_PREFIX) or name in hide:
            continue
        out[name] = _decode(raw, types.get(name), name)
    return out


_TAGS = frozenset({"bool", "numpy", "list", "tuple", "ndarray"})


def _decode(raw: Any, tag: Any, name: str) -> Any:
    if tag is None:
        if isinstance(raw, np.ndarray):
            return raw
        if isinstance(raw, np.generic):
            return raw.item()
        return raw
    arr = np.atleast_1d(np.asarray(raw))
    base, _, elem = str(tag).partition(":")
    # Tags are only ever written for numbers: another value means edited bookkeeping.
    if base not in _TAGS or elem not in ("", "bool") or arr.dtype.kind not in "biuf":
        raise FormatError(
            f"metadata {name!r}: the type {tag!r} recorded in {TYPES_ATTR} does not fit "
            f"its stored value"
        )
    if arr.ndim != 1 or (base in ("bool", "numpy") and arr.size != 1):
        raise FormatError(f"metadata {name!r}: a {base} stored with shape {arr.shape}")
    if elem == "bool":
        arr = arr.astype(bool)
    if base == "bool":
        return bool(arr[0])
    if base == "numpy":
        return arr[0]
    if base == "list":
        return arr.tolist()
    if base == "tuple":
        return tuple(arr.tolist())
    return arr
