"""dicts with str keys, encoded with msgpack.

Values may be None, bool, int, float, str, bytes, lists, tuples, nested dicts, numpy arrays
and scalars of the supported dtypes, and pint quantities of those. Tuples, arrays, numpy
scalars and quantities travel as msgpack extension types, so they come back as what they
were. Decoding only rebuilds these plain types: nothing in the file can make it run code,
and msgpack's own limits (every declared length is bounded by the size of the record)
defuse records that claim huge lengths.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pint

from .._errors import FormatError
from ._numeric import SUPPORTED_DTYPES, as_plain_array, check_array_dtype
from .base import Codec, Encoder, Layout, Spec
from .openmm_units import is_openmm_quantity, to_pint
from .quantities import check_units_text, units_string

__all__ = ["MappingCodec", "pack", "unpack"]

_EXT_NDARRAY = 1
_EXT_TUPLE = 2
_EXT_NUMPY_SCALAR = 3
_EXT_QUANTITY = 4
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
_OBJECT = np.dtype(object)
#: Containers nest at most this deep in a dict value (reading rebuilds them recursively).
MAX_NESTING = 64


def _tree(obj: Any, where: str, depth: int = 0) -> Any:
    """``obj`` as msgpack-native values and ExtTypes; TypeError/ValueError if unstorable."""
    cls = type(obj)
    if depth > MAX_NESTING:
        raise ValueError(f"{where}: containers nest deeper than {MAX_NESTING} levels")
    if obj is None or cls is bool or cls is float or cls is bytes:
        return obj
    if cls is str:
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{where}: a str that is not valid Unicode ({exc.reason})") from None
        return obj
    if cls is int:
        if not _INT_MIN <= obj <= _UINT_MAX:
            raise ValueError(f"{where}: the integer {obj} does not fit in 64 bits")
        return obj
    if cls is dict:
        out = {}
        for key, value in obj.items():
            if type(key) is not str:
                raise TypeError(f"{where}: dict keys must be str, not {type(key).__name__}")
            out[_tree(key, where)] = _tree(value, f"{where}[{key!r}]", depth + 1)
        return out
    if cls is list:
        return [_tree(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(obj)]
    if cls is tuple:
        items = [_tree(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(obj)]
        return msgpack.ExtType(_EXT_TUPLE, _packb(items))
    if cls is np.ndarray:
        dtype = check_array_dtype(obj.dtype)
        data = np.ascontiguousarray(obj, dtype=dtype).tobytes()
        return msgpack.ExtType(_EXT_NDARRAY, _packb([dtype.str, list(obj.shape), data]))
    if isinstance(obj, np.bool_ | np.integer | np.floating):
        dtype = check_array_dtype(obj.dtype, "scalar")
        return msgpack.ExtType(
            _EXT_NUMPY_SCALAR, _packb([dtype.str, np.asarray(obj, dtype=dtype).tobytes()])
        )
    if is_openmm_quantity(obj):
        obj = to_pint(obj)  # exact: same magnitude, the same units in pint
    if isinstance(obj, pint.Quantity):
        magnitude = obj.magnitude
        return msgpack.ExtType(
            _EXT_QUANTITY,
            _packb(
                [
                    check_units_text(units_string(obj.units)),
                    _tree(magnitude, f"{where}.magnitude", depth + 1),
                ]
            ),
        )
    if isinstance(obj, np.ndarray):  # a subclass: stored as a plain array, or refused
        try:
            plain = as_plain_array(obj)
        except TypeError as exc:
            raise TypeError(f"{where}: {exc}") from None
        return _tree(plain, where, depth)
    raise TypeError(
        f"{where}: cannot store a {cls.__name__} inside a dict (dict values may be None, "
        "bool, int, float, str, bytes, list, tuple, dict, numpy arrays and scalars, and "
        "pint and openmm.unit quantities)"
    )


def _packb(tree: Any) -> bytes:
    return msgpack.packb(tree, use_bin_type=True)


def pack(value: dict[str, Any]) -> bytes:
    """The msgpack record of ``value``."""
    return _packb(_tree(value, "dict"))


def unpack(data: bytes, registry: Any) -> Any:
    """Rebuild the value of a record written by :func:`pack`.

    Raises
    ------
    FormatError
        The record is not one that :func:`pack` writes.
    """
    try:
        value = _unpackb(data, registry)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"not a valid writebehind dict record ({exc})") from exc
    if type(value) is not dict:
        raise FormatError(f"a dict record holds a {type(value).__name__}, not a dict")
    return value


def _unpackb(data: bytes, registry: Any) -> Any:
    # Extensions are rebuilt after msgpack returns, not by an ext_hook: msgpack decodes in a
    # C frame of about 40 KiB, so nested extensions decoded from ext_hooks exhausted the C
    # stack (a segfault, not an exception) after about 200 levels, or a handful on a thread
    # with a small stack. Here a level costs Python frames; too deep ends in RecursionError.
    return _rebuild(msgpack.unpackb(data, raw=False, strict_map_key=True), registry)


def _rebuild(obj: Any, registry: Any) -> Any:
    cls = type(obj)
    if cls is list:
        return [_rebuild(item, registry) for item in obj]
    if cls is dict:
        return {key: _rebuild(value, registry) for key, value in obj.items()}
    if cls is msgpack.ExtType:
        return _extension(obj.code, obj.data, registry)
    return obj


def _extension(code: int, payload: bytes, registry: Any) -> Any:
    if code == _EXT_TUPLE:
        items = _unpackb(payload, registry)
        if type(items) is not list:
            raise FormatError("a tuple record does not hold a list")
        return tuple(items)
    if code == _EXT_NDARRAY:
        dtype_str, shape, raw = _unpackb(payload, registry)
        dtype = _safe_dtype(dtype_str)
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise FormatError(f"an array record declares a negative shape {shape}")
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise FormatError(
                f"an array record declares shape {shape} of {dtype} but holds {len(raw)} bytes"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if code == _EXT_NUMPY_SCALAR:
        dtype_str, raw = _unpackb(payload, registry)
        dtype = _safe_dtype(dtype_str)
        if len(raw) != dtype.itemsize:
            raise FormatError("a numpy scalar record has the wrong number of bytes")
        return np.frombuffer(raw, dtype=dtype)[0]
    if code == _EXT_QUANTITY:
        units, magnitude = _unpackb(payload, registry)
        # pint parses a str magnitude as an expression: only numbers and arrays are written.
        if not isinstance(magnitude, int | float | np.ndarray | np.generic):
            raise FormatError(f"a quantity record's magnitude is a {type(magnitude).__name__}")
        return registry.Quantity(magnitude, check_units_text(units))
    raise FormatError(f"unknown extension type {code} in a dict record")


def _safe_dtype(dtype_str: object) -> np.dtype[Any]:
    if not isinstance(dtype_str, str):
        raise FormatError("an array record's dtype is not a string")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise FormatError(f"an array record names an unknown dtype {dtype_str!r}") from exc
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    if native not in SUPPORTED_DTYPES:
        raise FormatError(f"an array record names an unsupported dtype {dtype_str!r}")
    return dtype


class MappingCodec(Codec):
    name = "dict"

    def spec_for(self, value: Any) -> Spec:
        if type(value) is not dict:
            raise TypeError(f"not a dict: {type(value).__name__}")
        pack(value)  # refuse at the call what cannot be stored
        return Spec(self.name, "dict", Layout("bytes", _OBJECT, ()))

    def encoder(self, spec: Spec) -> Encoder:
        def encode(value: Any) -> Any:
            if type(value) is not dict:
                raise TypeError(f"cannot store a {type(value).__name__} in a variable of dicts")
            return pack(value)

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return unpack(bytes(raw), registry)

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return [unpack(bytes(item), registry) for item in raw]
