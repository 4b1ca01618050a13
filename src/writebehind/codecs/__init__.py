"""Codecs: pure conversions between Python values and storable payloads (no file access).

``spec_for`` picks the codec of a first value, ``make_encoder`` checks and converts later
values, ``decode`` rebuilds values from what a driver read, and ``spec_from_attrs`` rebuilds a
spec from a variable's attributes (or infers one for a variable another program wrote).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pint

from .._bookkeeping import CODEC_ATTR, DTYPE_ATTR, PYTHON_ATTR, QUANTITY_ATTR
from .._errors import FormatError
from ._numeric import SUPPORTED_DTYPES, logical_name
from .arrays import ArrayCodec
from .base import ATTR_PREFIX, PACKING_ATTRS, Codec, Encoder, Layout, Spec
from .mappings import MappingCodec
from .openmm_units import is_openmm_quantity, to_pint
from .quantities import QuantityEncoder, check_units_text, quantity_spec, wrap_quantity
from .scalars import SCALAR_TYPES, ScalarCodec
from .sequences import SequenceCodec
from .strings import BytesCodec, CharsCodec, StringCodec

__all__ = [
    "ATTR_PREFIX",
    "CODECS",
    "Codec",
    "Encoder",
    "Layout",
    "Spec",
    "decode",
    "make_encoder",
    "spec_for",
    "spec_from_attrs",
    "unchecked_type",
]

CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        ScalarCodec(),
        StringCodec(),
        BytesCodec(),
        SequenceCodec(),
        ArrayCodec(),
        MappingCodec(),
        CharsCodec(),
    )
}


def _codec_of(value: Any) -> Codec:
    cls = type(value)
    if isinstance(value, SCALAR_TYPES):
        return CODECS["scalar"]
    if cls is str:
        return CODECS["str"]
    if cls is bytes:
        return CODECS["bytes"]
    if cls is list or cls is tuple:
        return CODECS["sequence"]
    if cls is np.ndarray:
        return CODECS["ndarray"]
    if cls is dict:
        return CODECS["dict"]
    if isinstance(value, np.ndarray):  # a subclass: the codec stores it plain or refuses it
        return CODECS["ndarray"]
    raise TypeError(
        f"cannot store a {cls.__name__}: writebehind stores bool, int, float, str, bytes, "
        "rectangular lists and tuples of numbers, numpy arrays (bool, int, uint, float), "
        "dicts with str keys, and pint or openmm.unit quantities of numbers or arrays"
    )


def spec_for(value: Any) -> Spec:
    """The spec that ``value``, the first one written to a variable, fixes.

    Raises
    ------
    TypeError
        ``value`` is of a type writebehind does not store.
    ValueError
        ``value`` is of a stored type but this value cannot be stored (an int beyond 64
        bits, a str with a NUL character...).
    """
    if is_openmm_quantity(value):  # stored as the pint quantity it equals
        value = to_pint(value)
    if isinstance(value, pint.Quantity):
        magnitude = value.magnitude
        codec = _codec_of(magnitude)
        if codec.name not in ("scalar", "ndarray"):
            raise TypeError(
                f"cannot store a quantity whose magnitude is a {type(magnitude).__name__}"
            )
        return quantity_spec(value, codec)
    return _codec_of(value).spec_for(value)


def make_encoder(spec: Spec) -> Encoder:
    """The function that checks a value against ``spec`` and returns its payload."""
    if spec.extra:
        return _refuse_packed
    encode = CODECS[spec.codec].encoder(spec)
    if spec.units is not None:
        return QuantityEncoder(spec, encode)
    return encode


def unchecked_type(spec: Spec) -> type | None:
    """The type whose values ``make_encoder(spec)`` returns unchanged without a check.

    A value of exactly this type may skip the encoder (the append path's fast path); None
    when every value must be encoded (quantities, packed variables, ints, arrays...).
    """
    if spec.extra or spec.units is not None:
        return None
    return CODECS[spec.codec].unchecked_type(spec)


def decode(raw: Any, spec: Spec, registry: Any, *, entries: bool) -> Any:
    """The Python value of ``raw`` (entries of an appendable variable when ``entries``)."""
    codec = CODECS[spec.codec]
    value = (
        codec.decode_entries(raw, spec, registry)
        if entries
        else codec.decode_value(raw, spec, registry)
    )
    if spec.extra:  # packed by another program: CF's unpacked = stored * scale + offset
        value = value * spec.extra.get("scale_factor", 1) + spec.extra.get("add_offset", 0)
    if spec.units is not None:
        return wrap_quantity(registry, value, spec)
    return value


def spec_from_attrs(attrs: dict[str, Any], layout: Layout, registry: Any) -> Spec:
    """Rebuild the spec of a stored variable from its attributes.

    A variable without writebehind's attributes (written by another program) gets the spec
    that reads it faithfully: numbers as ndarrays, strings as str, and a quantity where its
    ``units`` attribute parses in ``registry``.

    Raises
    ------
    FormatError
        The bookkeeping attributes are inconsistent with each other or with the layout.
    """
    codec_name = attrs.get(CODEC_ATTR)
    units = attrs.get("units")
    if codec_name is None:
        return _foreign_spec(layout, attrs, registry)
    if not isinstance(codec_name, str) or codec_name not in CODECS or codec_name == "chars":
        raise FormatError(f"unknown codec {codec_name!r}")  # chars: read-only, foreign
    python = str(attrs.get(PYTHON_ATTR, ""))
    logical = str(attrs.get(DTYPE_ATTR, ""))
    storage = {"str": "string", "bytes": "bytes", "dict": "bytes"}.get(codec_name, "numeric")
    if storage != layout.storage:
        raise FormatError(f"codec {codec_name!r} does not match the variable's storage")
    if storage == "numeric":
        try:
            logical_dtype = np.dtype(bool) if logical == "bool" else np.dtype(logical)
        except TypeError as exc:
            raise FormatError(f"unknown dtype {logical!r}") from exc
        if logical_dtype not in SUPPORTED_DTYPES:
            raise FormatError(f"unsupported dtype {logical!r}")
        if (logical == "bool" and layout.dtype.kind not in "iub") or (
            logical != "bool" and logical_dtype != layout.dtype
        ):
            raise FormatError(f"dtype {logical!r} does not match the stored {layout.dtype}")
        if codec_name == "scalar" and layout.shape != ():
            raise FormatError(f"a scalar variable has entries of shape {layout.shape}")
        if codec_name == "scalar" and python not in ("bool", "int", "float", "numpy"):
            raise FormatError(f"unknown scalar type {python!r}")
    quantity = attrs.get(QUANTITY_ATTR) is not None
    if quantity:
        if not isinstance(units, str):
            raise FormatError("a quantity variable has no units attribute")
        _check_units(units, registry)
    return Spec(codec_name, python, layout, logical, units if quantity else None)


def _refuse_packed(value: Any) -> Any:
    raise TypeError(
        "this variable is packed (CF scale_factor/add_offset, written by another program): "
        "writebehind reads it but does not write to it"
    )


def _check_units(units: str, registry: Any) -> None:
    try:
        registry.parse_units(check_units_text(units))
    except Exception as exc:
        raise FormatError(f"units {units!r} do not parse in pint ({exc})") from exc


def _foreign_spec(layout: Layout, attrs: dict[str, Any], registry: Any) -> Spec:
    """The spec that reads a variable another program wrote as faithfully as it can.

    Strings (arrays of them too) read as str, char arrays (``S1``, as AMBER and CF write
    names) as str along their last axis, numbers as ndarrays, unpacked when the variable
    has CF ``scale_factor``/``add_offset`` (writebehind does not write packed variables).
    Fill values are not masked: they read as the numbers stored.
    """
    if layout.storage == "string":
        return Spec("str", "str", layout)
    if layout.storage == "bytes":
        if layout.shape:
            raise FormatError("arrays of variable-length bytes are not supported")
        return Spec("bytes", "bytes", layout)
    if layout.dtype.kind == "S":
        return Spec("chars", "str", layout)
    if layout.dtype.kind not in "biufO":
        raise FormatError(f"variables of type {layout.dtype} are not supported")
    packing = {name: attrs[name] for name in PACKING_ATTRS if name in attrs}
    for name, value in packing.items():
        if not isinstance(value, int | float | np.integer | np.floating):
            raise FormatError(f"its {name} attribute is not a number: {value!r}")
    units = attrs.get("units")
    if isinstance(units, str) and units.strip():
        try:
            registry.parse_units(check_units_text(units))
        except Exception:
            units = None
    else:
        units = None
    # Entries of shape () are numbers: they read one by one as numpy scalars and take them.
    scalar = not layout.shape and layout.dtype.kind in "biuf"
    codec, python = ("scalar", "numpy") if scalar else ("ndarray", "ndarray")
    return Spec(codec, python, layout, logical_name(layout.dtype), units, packing)
