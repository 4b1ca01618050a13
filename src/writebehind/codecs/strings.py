"""str (stored as netCDF strings) and bytes (stored as variable-length bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import FormatError
from .base import Codec, Encoder, Layout, Spec

__all__ = ["BytesCodec", "CharsCodec", "StringCodec", "check_text"]

_OBJECT = np.dtype(object)


def check_text(value: str) -> str:
    """Return ``value`` if a netCDF string can hold it exactly, else raise ValueError."""
    if "\x00" in value:
        raise ValueError(
            "netCDF strings end at a NUL character, so a str containing '\\x00' would be "
            "cut short; store it as bytes, or inside a dict"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"cannot store a str that is not valid Unicode ({exc.reason})") from None
    return value


class StringCodec(Codec):
    name = "str"

    def spec_for(self, value: Any) -> Spec:
        if not isinstance(value, str):
            raise TypeError(f"not a str: {type(value).__name__}")
        check_text(value)
        return Spec(self.name, "str", Layout("string", _OBJECT, ()))

    def encoder(self, spec: Spec) -> Encoder:
        if spec.layout.shape:
            return _refuse_foreign_arrays

        def encode(value: Any) -> Any:
            if not isinstance(value, str):
                raise TypeError(f"cannot store a {type(value).__name__} in a variable of str")
            return check_text(str(value))

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        if spec.layout.shape:  # an array of strings another program wrote
            return np.asarray(raw, dtype=object).astype(str).reshape(spec.layout.shape)
        return str(np.asarray(raw, dtype=object).reshape(()).item())

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        if spec.layout.shape:
            return np.asarray(raw, dtype=object).astype(str)
        return [str(item) for item in raw]


def _refuse_foreign_arrays(value: Any) -> Any:
    raise TypeError(
        "this variable holds arrays of strings (written by another program): writebehind "
        "reads it but does not write to it"
    )


class CharsCodec(Codec):
    """Char arrays (netCDF ``char``, numpy ``S1``) another program wrote: read-only.

    The last axis holds the characters of one string, as the AMBER and CF conventions use
    them (``spatial = "xyz"``, station names); trailing NULs pad it and are dropped.
    """

    name = "chars"

    def spec_for(self, value: Any) -> Spec:
        raise TypeError("writebehind stores str as netCDF strings, not char arrays")

    def encoder(self, spec: Spec) -> Encoder:
        def encode(value: Any) -> Any:
            raise TypeError(
                "this variable is a char array (written by another program): writebehind "
                "reads it as str but does not write to it"
            )

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        strings = _join_chars(np.asarray(raw))
        return str(strings) if strings.ndim == 0 else strings

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return _join_chars(np.asarray(raw))


def _join_chars(chars: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``chars`` (dtype S1, the last axis one string's characters) as an array of str."""
    if chars.ndim == 0:
        chars = chars.reshape(1)
    width = chars.shape[-1]
    if width == 0:
        return np.zeros(chars.shape[:-1], dtype=str)
    joined = np.ascontiguousarray(chars).view(f"S{width}").reshape(chars.shape[:-1])
    try:
        return np.char.decode(joined, "utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"a char array that is not UTF-8 ({exc.reason})") from None


class BytesCodec(Codec):
    name = "bytes"

    def spec_for(self, value: Any) -> Spec:
        if not isinstance(value, bytes):
            raise TypeError(f"not bytes: {type(value).__name__}")
        return Spec(self.name, "bytes", Layout("bytes", _OBJECT, ()))

    def encoder(self, spec: Spec) -> Encoder:
        def encode(value: Any) -> Any:
            if not isinstance(value, bytes):
                raise TypeError(f"cannot store a {type(value).__name__} in a variable of bytes")
            return value

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return bytes(raw)

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return [bytes(item) for item in raw]
