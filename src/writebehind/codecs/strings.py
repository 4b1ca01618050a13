"""str (stored as netCDF strings) and bytes (stored as variable-length bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Codec, Encoder, Layout, Spec

__all__ = ["BytesCodec", "StringCodec", "check_text"]

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
        def encode(value: Any) -> Any:
            if not isinstance(value, str):
                raise TypeError(f"cannot store a {type(value).__name__} in a variable of str")
            return check_text(str(value))

        return encode

    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return str(np.asarray(raw, dtype=object).reshape(()).item())

    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        return [str(item) for item in raw]


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
