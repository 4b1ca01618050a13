"""The codec contract: pure conversions between Python values and storable payloads.

A codec never touches a file. It turns the first value written to a variable into a
:class:`Spec` (what every later value must match, and how the driver lays the variable out),
checks and converts each later value into a *payload* the engine can store, and turns what
the driver read back into the Python value that was written.

Payloads, by ``Layout.storage``:

- ``"numeric"``: an ndarray (or scalar) of the entry's shape, castable to ``Layout.dtype``;
  it may alias the caller's data, because the engine copies it (that copy is the snapshot).
- ``"string"``: a ``str``.
- ``"bytes"``: a ``bytes`` object.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._bookkeeping import ATTR_PREFIX, CODEC_ATTR, DTYPE_ATTR, PYTHON_ATTR, QUANTITY_ATTR

__all__ = ["ATTR_PREFIX", "PACKING_ATTRS", "Codec", "Layout", "Spec"]

#: CF packing attributes (unpacked = stored * scale_factor + add_offset): writebehind never
#: writes them, and unpacks a variable another program wrote with them.
PACKING_ATTRS = ("scale_factor", "add_offset")

Encoder = Callable[[Any], Any]


class Layout(NamedTuple):
    """How a variable is laid out in the file; all a driver needs to know."""

    storage: str  # "numeric", "string" or "bytes"
    dtype: np.dtype[Any]  # storage dtype of "numeric" layouts; object otherwise
    shape: tuple[int, ...]  # the shape of one entry (of the whole value, when fixed)

    @property
    def entry_nbytes(self) -> int:
        """Bytes one numeric entry occupies (a nominal 64 for strings and bytes)."""
        if self.storage != "numeric":
            return 64
        return int(math.prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class Spec:
    """What the first value fixed about a variable.

    ``codec`` names the codec family, ``python`` the Python type to give back (``"int"``,
    ``"tuple"``, ``"numpy"``...), ``logical_dtype`` the dtype the user sees (``"bool"`` is
    stored as int8), ``units`` the pint units string of a quantity (``None`` otherwise).
    """

    codec: str
    python: str
    layout: Layout
    logical_dtype: str = ""
    units: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def attrs(self) -> dict[str, Any]:
        """The bookkeeping attributes that let a later reader rebuild this spec."""
        out: dict[str, Any] = {
            CODEC_ATTR: self.codec,
            PYTHON_ATTR: self.python,
        }
        if self.logical_dtype:
            out[DTYPE_ATTR] = self.logical_dtype
        if self.units is not None:
            out["units"] = self.units
            out[QUANTITY_ATTR] = np.int8(1)
        return out


class Codec(ABC):
    """One family of Python types (scalars, arrays, mappings...)."""

    name: ClassVar[str]

    @abstractmethod
    def spec_for(self, value: Any) -> Spec:
        """The spec the first value ``value`` fixes. Raises TypeError/ValueError if unstorable."""

    @abstractmethod
    def encoder(self, spec: Spec) -> Encoder:
        """A function that checks a later value against ``spec`` and returns its payload.

        It raises ``TypeError`` for a value of another kind or a dtype that cannot be stored
        without loss, ``ValueError`` for another shape.
        """

    def unchecked_type(self, spec: Spec) -> type | None:
        """The type whose every value the encoder of ``spec`` returns unchanged, unchecked.

        The append path skips the encoder for a value of exactly this type (``type(x) is
        T``, not a subclass): a float into a float64 variable has nothing to check. None
        (the default) when every value must go through the encoder.
        """
        return None

    @abstractmethod
    def decode_value(self, raw: Any, spec: Spec, registry: Any) -> Any:
        """The value of a fixed variable from what the driver read."""

    @abstractmethod
    def decode_entries(self, raw: Any, spec: Spec, registry: Any) -> Any:
        """The entries of an appendable variable (raw has the entries along axis 0)."""
