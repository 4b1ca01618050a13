"""What the AMBER convention (https://ambermd.org/netcdf/nctraj.xhtml) says a trajectory holds.

The dimensions and variables of a new trajectory, the checks that an existing file is one
that can be continued, and the unit cell as the convention stores it (lengths and angles).
How the bytes are laid out and written is :mod:`.amber`'s business.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._netcdf3 import ParsedHeader

__all__ = [
    "OPTIONAL_VARIABLES",
    "AmberVariable",
    "cell_lengths_and_angles",
    "check_trajectory",
    "convention_layout",
]

#: The optional record variables, by the option that asks for them.
OPTIONAL_VARIABLES = {
    "velocities": ("velocities",),
    "forces": ("forces",),
    "box": ("cell_lengths", "cell_angles"),
}


@dataclass
class AmberVariable:
    name: str
    dims: tuple[str, ...]
    dtype: np.dtype[Any]  # big-endian, as stored
    attrs: dict[str, Any]
    data: np.ndarray[Any, Any] | None = None  # the value of a fixed (label) variable
    begin: int = 0
    length: int = 0  # entries written so far (record variables)

    @property
    def is_record(self) -> bool:
        return self.dims[0] == "frame"

    def entry_shape(self, dims: dict[str, int]) -> tuple[int, ...]:
        return tuple(dims[d] for d in (self.dims[1:] if self.is_record else self.dims))

    def vsize(self, dims: dict[str, int]) -> int:
        nbytes = int(np.prod(self.entry_shape(dims), dtype=np.int64)) * self.dtype.itemsize
        return -(-nbytes // 4) * 4


def convention_layout(
    n_atoms: int, *, velocities: bool, forces: bool, box: bool
) -> tuple[dict[str, int], list[AmberVariable]]:
    """The dimensions and variables of a new trajectory (offsets not yet laid out)."""
    dims = {
        "frame": 0,
        "spatial": 3,
        "atom": int(n_atoms),
        "cell_spatial": 3,
        "cell_angular": 3,
        "label": 5,
    }
    f32, f64 = np.dtype(">f4"), np.dtype(">f8")
    chars = np.dtype("S1")
    variables = [
        AmberVariable("spatial", ("spatial",), chars, {}, _chars(["x", "y", "z"])),
        AmberVariable("time", ("frame",), f32, {"units": "picosecond"}),
        AmberVariable("coordinates", ("frame", "atom", "spatial"), f32, {"units": "angstrom"}),
    ]
    if box:
        angular = _chars(["alpha", "beta ", "gamma"])
        variables += [
            AmberVariable("cell_spatial", ("cell_spatial",), chars, {}, _chars(["a", "b", "c"])),
            AmberVariable("cell_angular", ("cell_angular", "label"), chars, {}, angular),
            AmberVariable("cell_lengths", ("frame", "cell_spatial"), f64, {"units": "angstrom"}),
            AmberVariable("cell_angles", ("frame", "cell_angular"), f64, {"units": "degree"}),
        ]
    if velocities:
        units = {"units": "angstrom/picosecond"}  # no scale_factor: plain angstrom/ps
        variables.append(AmberVariable("velocities", ("frame", "atom", "spatial"), f32, units))
    if forces:
        units = {"units": "kilocalorie/mole/angstrom"}
        variables.append(AmberVariable("forces", ("frame", "atom", "spatial"), f32, units))
    return dims, variables


def check_trajectory(
    header: ParsedHeader, where: str, n_atoms: int | None, wanted: dict[str, bool | None]
) -> None:
    """Check that ``header`` is an AMBER trajectory of ``n_atoms`` (None: any) whose
    optional variables are those ``wanted`` (None: any).

    Raises
    ------
    ValueError
        It is not, with a message that says what differs and what to do.
    """
    conventions = str(header.attrs.get("Conventions", ""))
    if "AMBER" not in conventions.replace(",", " ").split():
        raise ValueError(f"{where} is not an AMBER trajectory (Conventions {conventions!r})")
    names = {v.name: v for v in header.variables}
    coordinates = names.get("coordinates")
    if coordinates is None or coordinates.dims != ("frame", "atom", "spatial"):
        raise ValueError(f"{where} has no coordinates(frame, atom, spatial)")
    if header.dims.get("frame") != 0 or "time" not in names:
        raise ValueError(f"{where} has no time(frame) on an unlimited frame dimension")
    atoms = header.dims["atom"]
    if n_atoms is not None and atoms != n_atoms:
        raise ValueError(
            f"{where} holds frames of {atoms} atoms, not {n_atoms}: "
            "append to a trajectory of the same system, or write a new file (mode 'w')"
        )
    for option, variables in OPTIONAL_VARIABLES.items():
        has = variables[0] in names
        asked = wanted[option]
        if asked is not None and asked != has:
            state = "has" if has else "has no"
            raise ValueError(
                f"{where} {state} {option} ({', '.join(variables)}) and every frame "
                f"appended must match: pass {option}={has}, or write a new file (mode 'w')"
            )


def cell_lengths_and_angles(vectors: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The lengths (in the vectors' unit) and angles (degree) of a unit cell's vectors."""
    # Plain floats: on a 3x3 array numpy's per-call overhead costs ~20 times the arithmetic,
    # and the AMBER reporter calls this every frame.
    a, b, c = np.asarray(vectors, dtype=np.float64).tolist()
    lengths = [math.sqrt(_dot(v, v)) for v in (a, b, c)]
    alpha = _angle(_dot(b, c), lengths[1], lengths[2])
    beta = _angle(_dot(a, c), lengths[0], lengths[2])
    gamma = _angle(_dot(a, b), lengths[0], lengths[1])
    return np.array(lengths), np.array([alpha, beta, gamma])


def _dot(u: list[float], v: list[float]) -> float:
    return float(u[0] * v[0] + u[1] * v[1] + u[2] * v[2])


def _angle(dot: float, length_1: float, length_2: float) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, dot / (length_1 * length_2)))))


def _chars(labels: list[str]) -> np.ndarray[Any, Any]:
    """Labels as the char array the convention stores (``S1``, one row per label)."""
    width = max(len(label) for label in labels)
    if width == 1:
        return np.array(labels, dtype="S1")
    return np.array([list(label.ljust(width)) for label in labels], dtype="S1")
