"""Attributes of the Zarr backend: numpy values in JSON, and back with their dtypes.

Zarr keeps attributes as JSON in each node's ``zarr.json``, where ``np.int8(1)`` and
``np.int64(1)`` are both ``1``. The backend writes every value as plain JSON, so that any
reader (xarray, zarr-python, a browser) sees numbers, strings and lists, and records the
numpy dtype of each non-``str`` value in one more attribute, ``writebehind_attribute_dtypes``
(a JSON object: name -> dtype string such as ``"<i8"``); reading applies it again:

=====================  =========================  ===========================
set                    in ``zarr.json``           read back
=====================  =========================  ===========================
``"nm"``               ``"nm"``                   ``"nm"``
``np.int8(1)``         ``1``, dtype ``"|i1"``     ``np.int8(1)``
``np.float32(0.5)``    ``0.5``, dtype ``"<f4"``   ``np.float32(0.5)``
``np.array([1, 2])``   ``[1, 2]``, ``"<i8"``      ``np.array([1, 2])`` (int64)
``np.float64("nan")``  ``NaN``                    ``np.float64("nan")``
=====================  =========================  ===========================

A JSON list is an array, anything else a scalar. Non-finite floats are written as zarr
writes them (``NaN``, ``Infinity``: Python's JSON reads them). Attributes another program
wrote, with no recorded dtype, read back as JSON gives them (int, float, str, list).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._bookkeeping import ATTR_DTYPES_ATTR

__all__ = ["ATTR_DTYPES_ATTR", "decode_attrs", "encode_attrs"]


def encode_attrs(attrs: Mapping[str, Any], dtypes: dict[str, str]) -> dict[str, Any]:
    """``attrs`` as JSON values; records each one's dtype in ``dtypes`` (changed in place).

    Raises
    ------
    TypeError
        A value is neither ``str`` nor numeric (bool, int, float, numpy scalar or array).
    """
    out: dict[str, Any] = {}
    for name, value in attrs.items():
        if isinstance(value, str):
            out[name] = value
            dtypes.pop(name, None)
            continue
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"attribute {name!r}: a Zarr store holds str and numeric attributes, "
                f"not {type(value).__name__}"
            )
        out[name] = array.tolist()  # a scalar for 0-d, nested lists otherwise
        dtypes[name] = array.dtype.str
    return out


def decode_attrs(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes as set, from what ``zarr.json`` holds (the dtype record removed)."""
    dtypes = stored.get(ATTR_DTYPES_ATTR)
    if not isinstance(dtypes, dict):
        dtypes = {}
    out: dict[str, Any] = {}
    for name, value in stored.items():
        if name == ATTR_DTYPES_ATTR:
            continue
        dtype = dtypes.get(name)
        if isinstance(dtype, str) and not isinstance(value, str):
            array = np.array(value, dtype=np.dtype(dtype))
            out[name] = array if isinstance(value, list) else array[()]
        else:
            out[name] = value
    return out
