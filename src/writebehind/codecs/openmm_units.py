"""openmm.unit quantities as values: each becomes the pint quantity of the same magnitude.

The magnitude is never scaled: an OpenMM unit maps, through a table of the units OpenMM
defines, to the pint units that mean exactly the same thing (``kilojoule/mole`` to
``kilojoule/mole``, ``elementary charge`` to ``elementary_charge``...), so the conversion is
exact. A unit is mapped once and cached by the OpenMM ``Unit`` object (no unit-string parsing
per value). A unit outside the table is refused with a message that names it.

OpenMM is never imported here: an OpenMM quantity is recognised by its class's module
(``openmm.unit.quantity``, or ``simtk.unit.quantity`` for OpenMM < 7.6), so importing
writebehind never imports OpenMM.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pint

__all__ = [
    "OPENMM_TO_PINT",
    "is_openmm_quantity",
    "is_openmm_quantity_class",
    "openmm_magnitude",
    "pint_units_of",
    "to_pint",
]

_QUANTITY_MODULES = frozenset({"openmm.unit.quantity", "simtk.unit.quantity"})

#: OpenMM's base and scaled unit names -> the pint unit of exactly the same size. OpenMM's
#: ``dalton`` (and ``amu``) is a molar mass, gram/mole, where pint's dalton is a mass; units
#: whose OpenMM and pint definitions differ (pound, stone, psi, mmHg, debye, bohr, hartree,
#: furlong) or that pint lacks (item, ban, nat) are not in the table.
OPENMM_TO_PINT: dict[str, str] = {
    "elementary charge": "elementary_charge",
    "coulomb": "coulomb",
    "dalton": "gram / mole",
    "mole": "mole",
    "kelvin": "kelvin",
    "radian": "radian",
    "degree": "degree",
    "arcminute": "arcminute",
    "arcsecond": "arcsecond",
    "angstrom": "angstrom",
    "bar": "bar",
    "atmosphere": "atmosphere",
    "torr": "torr",
    "electron volt": "electron_volt",
    "erg": "erg",
    "dyne": "dyne",
    "ampere": "ampere",
    "volt": "volt",
    "watt": "watt",
    "ohm": "ohm",
    "farad": "farad",
    "henry": "henry",
    "tesla": "tesla",
    "candela": "candela",
    "minute": "minute",
    "hour": "hour",
    "day": "day",
    "week": "week",
    "julian year": "julian_year",
    "century": "century",
    "foot": "foot",
    "inch": "inch",
    "yard": "yard",
    "mile": "mile",
    "bit": "bit",
    "byte": "byte",
}
# SI prefixes that OpenMM and pint spell alike (OpenMM's "yotto" is not pint's "yocto").
_PREFIXES: tuple[str, ...] = (
    "yotta",
    "zetta",
    "exa",
    "peta",
    "tera",
    "giga",
    "mega",
    "kilo",
    "hecto",
)
_PREFIXES += ("deca", "deka", "deci", "centi", "milli", "micro", "nano", "pico", "femto")
_PREFIXES += ("atto", "zepto")
for _base in ("meter", "second", "gram", "joule", "calorie", "liter", "molar", "newton", "pascal"):
    OPENMM_TO_PINT[_base] = _base
    OPENMM_TO_PINT.update({prefix + _base: prefix + _base for prefix in _PREFIXES})

_OPENMM_QUANTITY_CLASSES: set[type] = set()
#: OpenMM Unit -> (pint Unit, its units string), filled on first use of each unit.
_UNITS_CACHE: dict[Any, tuple[Any, str]] = {}


def is_openmm_quantity_class(cls: Any) -> bool:
    """Whether ``cls`` is OpenMM's ``Quantity`` class (without importing OpenMM)."""
    if cls in _OPENMM_QUANTITY_CLASSES:
        return True
    if (
        isinstance(cls, type)
        and cls.__name__ == "Quantity"
        and getattr(cls, "__module__", "") in _QUANTITY_MODULES
    ):
        _OPENMM_QUANTITY_CLASSES.add(cls)
        return True
    return False


def is_openmm_quantity(value: Any) -> bool:
    """Whether ``value`` is an ``openmm.unit.Quantity`` (without importing OpenMM)."""
    return is_openmm_quantity_class(type(value))


def pint_units_of(openmm_unit: Any) -> tuple[Any, str]:
    """The pint Unit (of pint's application registry) that equals ``openmm_unit``, and the
    units string writebehind stores for it; cached per OpenMM unit.

    Raises
    ------
    TypeError
        ``openmm_unit`` holds a unit outside :data:`OPENMM_TO_PINT`.
    """
    try:
        return _UNITS_CACHE[openmm_unit]
    except KeyError:
        pass
    factors = []
    for base, exponent in openmm_unit.iter_base_or_scaled_units():
        name = OPENMM_TO_PINT.get(base.name)
        if name is None:
            raise TypeError(
                f"cannot store an openmm.unit.Quantity in {openmm_unit}: writebehind has no "
                f"exact pint equivalent of OpenMM's unit {base.name!r}; convert the value "
                "with value_in_unit() to a unit it maps (see docs/openmm.md)"
            )
        power = int(exponent) if float(exponent).is_integer() else float(exponent)
        factors.append(f"({name})**{power}")
    registry = pint.get_application_registry()
    units = registry.parse_units(" * ".join(factors) if factors else "dimensionless")
    mapped = (units, f"{units:C}")  # as quantities.units_string
    _UNITS_CACHE[openmm_unit] = mapped
    return mapped


def openmm_magnitude(value: Any) -> Any:
    """The magnitude of an OpenMM quantity as pint would hold it: lists (of numbers or
    ``Vec3``) and ``Vec3`` become ndarrays; scalars and ndarrays stay as they are."""
    magnitude = value._value
    if isinstance(magnitude, list | tuple):  # Vec3 is a tuple
        magnitude = np.asarray(magnitude)
        if magnitude.dtype.kind not in "biuf":
            raise TypeError(
                "cannot store an openmm.unit.Quantity whose magnitude is not a rectangular "
                f"list of numbers (got an array of {magnitude.dtype})"
            )
    return magnitude


def to_pint(value: Any) -> pint.Quantity:
    """The pint quantity (application registry) equal to the OpenMM quantity ``value``."""
    units, _ = pint_units_of(value.unit)
    return pint.get_application_registry().Quantity(openmm_magnitude(value), units)
