"""``writebehind export FILE --amber OUT``: a writebehind trajectory as an AMBER one.

It finds the trajectory's variables in one group of FILE (the layout of
:class:`writebehind.openmm.Reporter` by default: ``positions``, ``velocities``, ``forces``,
``box_vectors``, ``time``), checks them all before it writes anything (one frame count, one
atom count, units it can convert), then copies them a block of frames at a time into an
AMBER-convention trajectory (:class:`~writebehind.drivers.amber.AmberDriver`): angstrom,
angstrom/picosecond, kilocalorie/mole/angstrom, picosecond, float32. Memory holds one
block, whatever the trajectory's length. OUT appears complete or not at all: the frames go
to a temporary file beside it, renamed to OUT at the end.

Nothing here imports OpenMM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pint

from ._inspect import FileSummary, GroupSummary, VariableSummary
from ._paths import join
from .codecs.quantities import check_units_text
from .drivers.amber import AmberDriver, cell_lengths_and_angles

__all__ = ["ExportError", "ExportPlan", "export_amber", "plan_export"]

#: What each AMBER variable holds: the default name of its source in the Reporter's layout,
#: the units the AMBER file stores, the units OpenMM uses (``--assume-openmm-units``), and
#: the pint dimensionality the source's units must have.
SOURCES = {
    "positions": ("positions", "angstrom", "nanometer", "[length]"),
    "velocities": ("velocities", "angstrom/picosecond", "nanometer/picosecond", "[length]/[time]"),
    "forces": (
        "forces",
        "kilocalorie/mole/angstrom",
        "kilojoule/mole/nanometer",
        "[mass]*[length]/[time]**2/[substance]",
    ),
    "box": ("box_vectors", "angstrom", "nanometer", "[length]"),
    "time": ("time", "picosecond", "picosecond", "[time]"),
}
OPTIONAL = ("velocities", "forces", "box", "time")
#: Bytes of positions read per block (about as much again for each other variable).
BLOCK_BYTES = 32 << 20


class ExportError(Exception):
    """The file cannot be exported as asked: the message says why, in one line."""


@dataclass(frozen=True)
class Source:
    """One variable to export: where it is, how many entries, the factor to AMBER's units."""

    path: str
    entries: int
    entry_shape: tuple[int, ...]
    factor: float


@dataclass(frozen=True)
class ExportPlan:
    """What :func:`export_amber` copies: checked in full before anything is written."""

    frames: int
    atoms: int
    sources: dict[str, Source]  # "positions", and those of OPTIONAL that are exported


def plan_export(
    summary: FileSummary,
    group: str = "",
    names: dict[str, str] | None = None,
    without: tuple[str, ...] = (),
    assume_openmm_units: bool = False,
) -> ExportPlan:
    """Find and check the variables to export from ``summary``'s ``group``.

    Parameters
    ----------
    summary : FileSummary
        The file, as ``writebehind inspect`` reads it.
    group : str
        The group holding the variables (``""``: the root).
    names : dict
        Variable names (relative to ``group``) for ``positions``, ``velocities``,
        ``forces``, ``box`` and ``time``, in place of the Reporter's. A name given must exist.
    without : tuple of str
        Of ``velocities``, ``forces``, ``box``: leave them out even if the file has them.
    assume_openmm_units : bool
        Take variables stored without units as in OpenMM's (nanometer, picosecond...).

    Raises
    ------
    ExportError
        No positions; a name given that is missing; a variable that is not appendable or
        numeric, whose units are unknown or of another kind, or that has no units (and
        ``assume_openmm_units`` is false); frames of different counts or shapes.
    """
    names = names or {}
    group = group.strip("/")
    variables = {n.path: n for n in summary.nodes() if isinstance(n, VariableSummary)}
    groups = {n.path for n in summary.nodes() if isinstance(n, GroupSummary)}
    if group and group not in groups:
        raise ExportError(f"no group {group!r} in {summary.file_name!r}")
    sources: dict[str, Source] = {}
    for role, (default, target, openmm_units, dimension) in SOURCES.items():
        if role in without:
            continue
        path = join(group, names.get(role, default)) if group else names.get(role, default)
        variable = variables.get(path)
        if variable is None:
            if role in names:
                raise ExportError(f"no variable {path!r} in {summary.file_name!r}")
            if role == "positions":
                raise ExportError(_no_positions(summary.file_name, group, variables))
            continue
        factor = _factor(variable, target, openmm_units, dimension, assume_openmm_units)
        sources[role] = Source(path, variable.entries or 0, variable.entry_shape, factor)
    positions = sources["positions"]
    shape = positions.entry_shape
    if len(shape) != 2 or shape[1] != 3 or shape[0] < 1:
        raise ExportError(f"{positions.path!r} holds entries of shape {shape}, not (atoms, 3)")
    for role in ("velocities", "forces"):
        if role in sources and sources[role].entry_shape != shape:
            got = sources[role]
            raise ExportError(
                f"{got.path!r} holds entries of shape {got.entry_shape}, "
                f"not {shape} as {positions.path!r}"
            )
    if "box" in sources and sources["box"].entry_shape not in ((3, 3), (3,)):
        got = sources["box"]
        raise ExportError(
            f"{got.path!r} holds entries of shape {got.entry_shape}: a box is 3 vectors "
            "(3, 3) or 3 lengths (3,)"
        )
    if "time" in sources and sources["time"].entry_shape != ():
        raise ExportError(f"{sources['time'].path!r} holds arrays, not one time per frame")
    counts = {source.path: source.entries for source in sources.values()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{path} {n}" for path, n in counts.items())
        raise ExportError(f"ragged frames: the variables hold different entry counts ({listed})")
    return ExportPlan(positions.entries, shape[0], sources)


def _no_positions(file_name: str, group: str, variables: dict[str, VariableSummary]) -> str:
    where = f"group {group!r}" if group else "the root group"
    holders = sorted(path.rpartition("/")[0] for path in variables if path.endswith("positions"))
    hint = (
        f"; groups with positions: {', '.join(h or '(root)' for h in holders)} (pass --group)"
        if holders
        else "; name the variable with --positions"
    )
    return f"no 'positions' variable in {where} of {file_name!r}{hint}"


def _factor(
    variable: VariableSummary,
    target: str,
    openmm_units: str,
    dimension: str,
    assume_openmm_units: bool,
) -> float:
    """The factor from ``variable``'s units to ``target``."""
    if variable.kind != "appendable":
        raise ExportError(f"{variable.path!r} is a fixed variable, not one entry per frame")
    if variable.problem or np.dtype(variable.dtype).kind not in "iuf":
        raise ExportError(f"{variable.path!r} holds {variable.python_type}, not numbers")
    units = variable.units
    if units is None:
        if not assume_openmm_units:
            raise ExportError(
                f"{variable.path!r} has no units: store pint quantities, or pass "
                f"--assume-openmm-units to take it in {openmm_units}"
            )
        units = openmm_units
    registry = pint.get_application_registry()
    try:
        source = registry.Quantity(1.0, check_units_text(units))
    except (ValueError, pint.errors.PintError, AttributeError, TypeError, SyntaxError):
        raise ExportError(f"{variable.path!r}: unknown units {units!r}") from None
    if source.dimensionality != registry.get_dimensionality(dimension):
        raise ExportError(f"{variable.path!r} is in {units}, which cannot convert to {target}")
    return float(source.to(target).magnitude)


def export_amber(
    plan: ExportPlan,
    read: Callable[[str, int, int], Any],
    out: str,
    *,
    title: str = "",
    block_frames: int | None = None,
    program_version: str = "",
    append: bool = False,
) -> None:
    """Write ``plan``'s frames to the AMBER trajectory ``out`` (replaced if it exists).

    ``read(path, start, stop)`` returns entries ``start:stop`` of the variable at ``path``
    (a pint quantity or an array; its magnitude is taken as in the source's units). With
    ``append``, the frames are added to the end of the trajectory ``out``, which counts them
    only once all are written.

    Raises
    ------
    OSError
        ``out`` cannot be written; nothing is left at ``out`` then (an earlier file stays;
        appended to, it counts the frames it had).
    FileNotFoundError
        ``append`` and no ``out``.
    ValueError
        ``append`` and ``out`` is not an AMBER trajectory of the same atoms and variables.
    """
    block = block_frames or max(1, BLOCK_BYTES // (plan.atoms * 3 * 8))
    if append:
        _append_amber(plan, read, out, block)
        return
    partial = f"{out}.partial-{os.getpid()}"
    driver = _amber_driver(
        plan,
        partial,
        "w",
        program="writebehind export",
        program_version=program_version,
        title=title,
    )
    try:
        driver.open()
        for start, stop in _blocks(plan.frames, block):
            for name, values in _amber_block(plan, read, start, stop):
                driver.write_entries(name, start, values)
        driver.sync(durable=True)
        driver.close()
        os.replace(partial, out)
    except BaseException:
        driver.close()
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def _append_amber(
    plan: ExportPlan, read: Callable[[str, int, int], Any], out: str, block: int
) -> None:
    driver = _amber_driver(plan, out, "a")
    driver.open()
    try:
        first = driver.frames
        for start, stop in _blocks(plan.frames, block):
            for name, values in _amber_block(plan, read, start, stop):
                driver.write_entries(name, first + start, values)
        driver.sync(durable=True)  # the record count: all the frames, or none of them
    finally:
        driver.abandon()


def _amber_driver(plan: ExportPlan, path: str, mode: str, **header: Any) -> AmberDriver:
    """An AMBER trajectory at ``path`` for ``plan``'s atoms and variables."""
    sources = plan.sources
    return AmberDriver(
        path,
        mode,
        n_atoms=plan.atoms,
        velocities="velocities" in sources,
        forces="forces" in sources,
        box="box" in sources,
        **header,
    )


def _blocks(frames: int, block: int) -> Iterator[tuple[int, int]]:
    for start in range(0, frames, block):
        yield start, min(frames, start + block)


def _amber_block(
    plan: ExportPlan, read: Callable[[str, int, int], Any], start: int, stop: int
) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """The AMBER variables' entries ``start:stop``, in AMBER's units."""
    sources = plan.sources

    def magnitude(role: str) -> np.ndarray[Any, Any]:
        value = read(sources[role].path, start, stop)
        value = getattr(value, "magnitude", value)  # a pint quantity, or a plain array
        return np.asarray(value, dtype=np.float64) * sources[role].factor

    if "time" in sources:
        yield "time", magnitude("time").astype(np.float32)
    else:  # the convention needs a time: the frame's index, in picosecond
        yield "time", np.arange(start, stop, dtype=np.float32)
    yield "coordinates", magnitude("positions").astype(np.float32)
    for role in ("velocities", "forces"):
        if role in sources:
            yield role, magnitude(role).astype(np.float32)
    if "box" in sources:
        box = magnitude("box")
        if box.ndim == 2:  # lengths of a rectangular box
            lengths, angles = box, np.full_like(box, 90.0)
        else:
            cells = [cell_lengths_and_angles(vectors) for vectors in box]
            lengths = np.array([cell[0] for cell in cells])
            angles = np.array([cell[1] for cell in cells])
        yield "cell_lengths", lengths
        yield "cell_angles", angles
