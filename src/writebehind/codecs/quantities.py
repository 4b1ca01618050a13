"""pint quantities: a numeric codec for the magnitude, a CF ``units`` attribute for the units.

The units string is pint's compact format (``nanometer**2/picosecond``), which pint parses
back and which UDUNITS (and so CF tools) accepts too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pint

from .base import Codec, Encoder, Spec

__all__ = ["QuantityEncoder", "quantity_spec", "units_string", "wrap_quantity"]


def units_string(units: Any) -> str:
    """The string stored for ``units`` (a pint Unit)."""
    return f"{units:C}"


def quantity_spec(value: pint.Quantity, inner: Codec) -> Spec:
    """The spec of quantity ``value`` whose magnitude the codec ``inner`` stores."""
    return replace(inner.spec_for(value.magnitude), units=units_string(value.units))


class QuantityEncoder:
    """Checks a quantity's units against the variable's, converts, then encodes the magnitude.

    Values already in the stored units (the common case in a loop) skip pint's conversion.
    """

    __slots__ = ("_container", "_encode_magnitude", "_units")

    def __init__(self, spec: Spec, encode_magnitude: Encoder):
        assert spec.units is not None
        self._units = spec.units
        self._encode_magnitude = encode_magnitude
        self._container: Any = None

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, pint.Quantity):
            raise TypeError(
                f"this variable holds quantities in {self._units}; "
                f"got a {type(value).__name__} without units"
            )
        container = value._units
        if container == self._container:
            return self._encode_magnitude(value.magnitude)
        if units_string(value.units) == self._units:
            self._container = container
            return self._encode_magnitude(value.magnitude)
        # Raises pint's DimensionalityError when the dimensions differ.
        return self._encode_magnitude(value.m_as(self._units))


def wrap_quantity(registry: Any, magnitude: Any, spec: Spec) -> Any:
    """The quantity of ``magnitude`` in the spec's units, from ``registry``."""
    return registry.Quantity(magnitude, spec.units)
