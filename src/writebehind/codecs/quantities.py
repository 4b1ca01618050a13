"""pint quantities: a numeric codec for the magnitude, a CF ``units`` attribute for the units.

The units string is pint's compact format (``nanometer**2/picosecond``), which pint parses
back and which UDUNITS (and so CF tools) accepts too.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pint
from pint.util import string_preprocessor

from .base import Codec, Encoder, Spec
from .openmm_units import is_openmm_quantity, openmm_magnitude, pint_units_of, to_pint

__all__ = [
    "MAX_UNITS_LENGTH",
    "QuantityEncoder",
    "check_units_text",
    "quantity_spec",
    "units_string",
    "wrap_quantity",
]

#: Longest units string stored or parsed (pint's parser slows down on long expressions).
MAX_UNITS_LENGTH = 256
#: Largest exponent of a power in a units string.
MAX_EXPONENT = 1000
_POWER = re.compile(r"\*\*|\^")
_PLAIN_EXPONENT = re.compile(r"\s*\(?\s*([-+]?\s*(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\)?\s*")


def check_units_text(units: str) -> str:
    """Return ``units`` if pint parses it in bounded time and memory, else raise ValueError.

    pint evaluates the numbers of a units expression exactly, so a units attribute such as
    ``10**10**10`` makes it compute an integer of ten billion digits (minutes of CPU and
    gigabytes; found with hostile files). Every power must have a plain number of magnitude
    at most 1000 as its exponent and no power in its base (``((10**999)**999)**999``), and
    the string at most 256 characters.
    """
    if len(units) > MAX_UNITS_LENGTH:
        raise ValueError(f"units longer than {MAX_UNITS_LENGTH} characters")
    text = string_preprocessor(units)  # pint's own rewriting: superscripts become **
    for power in _POWER.finditer(text):
        exponent = _PLAIN_EXPONENT.match(text, power.end())
        if exponent is None or _POWER.match(text, exponent.end()):
            raise ValueError(f"units {units!r}: an exponent must be a plain number")
        if not abs(float(exponent.group(1).replace(" ", ""))) <= MAX_EXPONENT:
            raise ValueError(f"units {units!r}: an exponent beyond {MAX_EXPONENT}")
        if _POWER.search(_base_group(text, power.start())):
            raise ValueError(f"units {units!r}: a power of a power")
    return units


def _base_group(text: str, end: int) -> str:
    """The parenthesized group that ends just before ``end`` in ``text`` ("" if none)."""
    stop = len(text[:end].rstrip())
    if not stop or text[stop - 1] != ")":
        return ""
    depth = 0
    for start in range(stop - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[start], 0)
        if depth == 0:
            return text[start:stop]
    return text[:stop]  # unbalanced: pint refuses it anyway


def units_string(units: Any) -> str:
    """The string stored for ``units`` (a pint Unit)."""
    return f"{units:C}"


def quantity_spec(value: pint.Quantity, inner: Codec) -> Spec:
    """The spec of quantity ``value`` whose magnitude the codec ``inner`` stores."""
    units = check_units_text(units_string(value.units))
    return replace(inner.spec_for(value.magnitude), units=units)


class QuantityEncoder:
    """Checks a quantity's units against the variable's, converts, then encodes the magnitude.

    Values already in the stored units (the common case in a loop) skip pint's conversion.
    """

    __slots__ = ("_container", "_encode_magnitude", "_openmm_unit", "_units")

    def __init__(self, spec: Spec, encode_magnitude: Encoder):
        assert spec.units is not None
        self._units = spec.units
        self._encode_magnitude = encode_magnitude
        self._container: Any = None
        self._openmm_unit: Any = None  # the last OpenMM unit seen equal to the stored units

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, pint.Quantity):
            if is_openmm_quantity(value):
                return self._encode_openmm(value)
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

    def _encode_openmm(self, value: Any) -> Any:
        """An openmm.unit.Quantity: its magnitude as it is when its unit maps to the stored
        units (found once per OpenMM unit, then an identity check), else converted by pint."""
        unit = value.unit
        if unit is not self._openmm_unit:
            units, text = pint_units_of(unit)
            # The same units written in another order (kcal/angstrom/mol) are the same units.
            if text != self._units and units != units._REGISTRY.parse_units(self._units):
                return self(to_pint(value))
            self._openmm_unit = unit
        return self._encode_magnitude(openmm_magnitude(value))


def wrap_quantity(registry: Any, magnitude: Any, spec: Spec) -> Any:
    """The quantity of ``magnitude`` in the spec's units, from ``registry``."""
    return registry.Quantity(magnitude, spec.units)
