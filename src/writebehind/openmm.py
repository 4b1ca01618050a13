"""An OpenMM reporter that stores trajectories write-behind (``pip install writebehind[openmm]``).

::

    from writebehind.openmm import Reporter

    simulation.reporters.append(Reporter("traj.nc", 10, velocities=True))
    simulation.step(1000)
    simulation.reporters[-1].close()   # or use the reporter as a context manager

``report`` runs on OpenMM's thread and only takes what it stores from the state, in the
stored units, and hands it to the store's engine (which copies it: that copy is the
snapshot); the file is written by the store's writer thread. See docs/openmm.md.

This module imports OpenMM when it is imported; ``import writebehind`` never does.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import openmm
from openmm import unit

from . import __version__ as _writebehind_version
from ._engine import on_writer_thread
from ._legacy import NetCDFIODriver
from ._store import StorageInterface
from .drivers.amber import AmberDriver

__all__ = ["Reporter"]

FORMATS = ("writebehind", "amber")
# OpenMM 8.1 made describeNextReport return a dict; earlier versions expect a tuple.
_DICT_PROTOCOL = tuple(int(part) for part in openmm.__version__.split(".")[:2]) >= (8, 1)


class _Converter:
    """Conversion factors from OpenMM units to one unit, cached per OpenMM unit (OpenMM
    returns states in its MD units, so each factor is computed once)."""

    __slots__ = ("_factors", "_target")

    def __init__(self, target: Any):
        self._target = target
        self._factors: dict[Any, float] = {}

    def factor(self, source: Any) -> float:
        factor = self._factors.get(source)
        if factor is None:
            factor = self._factors[source] = source.conversion_factor_to(self._target)
        return factor


class Reporter:
    """Stores an OpenMM simulation's trajectory, write-behind, every ``report_interval`` steps.

    Parameters
    ----------
    file_or_store : str, os.PathLike or StorageInterface
        A path: the reporter creates the file (replacing one that exists) and closes it in
        :meth:`close`. A :class:`~writebehind.StorageInterface` (``format="writebehind"``
        only): the reporter stores under ``group`` in it and leaves it open.
    report_interval : int
        Steps between reports.
    positions, velocities, forces, energies, box : bool
        What to store. OpenMM is asked only for these.
    enforce_periodic_box : bool, optional
        Wrap molecules into the periodic box (None: OpenMM's default for the system).
    format : {"writebehind", "amber"}
        ``"writebehind"``: a NetCDF-4 file of pint quantities in OpenMM's units (float64
        positions in nanometer...). ``"amber"``: an AMBER-convention NetCDF trajectory that
        mdtraj, MDAnalysis and cpptraj read (float32, angstrom).
    atom_subset : sequence of int, optional
        Store these atoms only (positions, velocities and forces).
    group : str
        Where the variables go in a writebehind file (``""``: the root). Several reporters
        in one store need different groups.
    """

    def __init__(
        self,
        file_or_store: Any,
        report_interval: int,
        *,
        positions: bool = True,
        velocities: bool = False,
        forces: bool = False,
        energies: bool = True,
        box: bool = True,
        enforce_periodic_box: bool | None = None,
        format: str = "writebehind",
        atom_subset: Any = None,
        group: str = "",
    ):
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
        if int(report_interval) < 1:
            raise ValueError(f"report_interval must be at least 1, not {report_interval}")
        if format == "amber" and not positions:
            raise ValueError("an AMBER trajectory holds coordinates: positions=True")
        self._interval = int(report_interval)
        self._format = format
        self._want = {
            "positions": positions,
            "velocities": velocities,
            "forces": forces,
            "energy": energies and format == "writebehind",  # AMBER files hold no energies
        }
        self._include = [name for name, wanted in self._want.items() if wanted]
        self._box = box
        self._periodic = enforce_periodic_box
        self._subset = None if atom_subset is None else np.asarray(atom_subset, dtype=np.intp)
        self._group = group.strip("/")
        self._owns_store = not isinstance(file_or_store, StorageInterface)
        if not self._owns_store and format == "amber":
            raise ValueError("format='amber' writes its own file: pass a path, not a store")
        self._path = file_or_store if self._owns_store else None
        self._store: StorageInterface | None = None
        if format == "writebehind":
            self._store = (
                StorageInterface(NetCDFIODriver(file_or_store, "w"))
                if self._owns_store
                else file_or_store
            )
        self._nodes: dict[str, Any] = {}
        self._closed = False
        self._finalizer: Any = None
        if self._store is not None and self._owns_store:
            self._finalizer = weakref.finalize(self, _close_store, self._store)
        targets = {
            "angstrom": unit.angstrom,
            "angstrom/picosecond": unit.angstrom / unit.picosecond,
            "kilocalorie/mole/angstrom": unit.kilocalorie_per_mole / unit.angstrom,
            "picosecond": unit.picosecond,
        }
        self._to = {name: (_Converter(target), target) for name, target in targets.items()}
        self._scratch: dict[str, np.ndarray[Any, Any]] = {}

    # -- OpenMM's reporter protocol ---------------------------------------------------
    def describeNextReport(self, simulation: Any) -> Any:
        """What OpenMM must give :meth:`report` next, and in how many steps."""
        steps = self._interval - simulation.currentStep % self._interval
        if _DICT_PROTOCOL:
            return {"steps": steps, "periodic": self._periodic, "include": self._include}
        want = self._want
        return (
            steps,
            want["positions"],
            want["velocities"],
            want["forces"],
            want["energy"],
            self._periodic,
        )

    def report(self, simulation: Any, state: Any) -> None:
        """Store this state's values (copied now, written by the store's writer thread).

        Raises
        ------
        ValueError
            The reporter is closed.
        """
        if self._closed:
            raise ValueError("this Reporter is closed")
        if self._format == "amber":
            self._report_amber(simulation, state)
        else:
            self._report_writebehind(simulation, state)

    # -- writebehind format -------------------------------------------------------------
    def _node(self, name: str) -> Any:
        node = self._nodes.get(name)
        if node is None:
            assert self._store is not None
            path = f"{self._group}/{name}" if self._group else name
            node = self._nodes[name] = self._store[path]
        return node

    def _atoms(self, quantity: Any) -> Any:
        """The quantity of the subset's atoms (OpenMM's own when there is no subset)."""
        if self._subset is None:
            return quantity
        return unit.Quantity(quantity._value[self._subset], quantity.unit)

    def _report_writebehind(self, simulation: Any, state: Any) -> None:
        # OpenMM quantities go to the store as they are: the store maps OpenMM's units to
        # pint's once per unit (writebehind.codecs.openmm_units) and copies the magnitude.
        self._node("step").append(int(simulation.currentStep))
        self._node("time").append(state.getTime())
        if self._want["positions"]:
            self._node("positions").append(self._atoms(state.getPositions(asNumpy=True)))
        if self._want["velocities"]:
            self._node("velocities").append(self._atoms(state.getVelocities(asNumpy=True)))
        if self._want["forces"]:
            self._node("forces").append(self._atoms(state.getForces(asNumpy=True)))
        if self._want["energy"]:
            self._node("potential_energy").append(state.getPotentialEnergy())
            self._node("kinetic_energy").append(state.getKineticEnergy())
        if self._box:
            self._node("box_vectors").append(state.getPeriodicBoxVectors(asNumpy=True))

    # -- AMBER format -------------------------------------------------------------------
    def _open_amber(self, simulation: Any) -> StorageInterface:
        n_atoms = simulation.topology.getNumAtoms() if self._subset is None else len(self._subset)
        assert self._path is not None  # an AMBER reporter is given a path
        driver = AmberDriver(
            self._path,
            "w",
            n_atoms=n_atoms,
            velocities=self._want["velocities"],
            forces=self._want["forces"],
            box=self._box,
            program="writebehind",
            program_version=_writebehind_version,
        )
        store = StorageInterface(driver)
        self._finalizer = weakref.finalize(self, _close_store, store)
        return store

    def _amber_value(self, name: str, quantity: Any, target: str) -> Any:
        """``quantity`` (of the subset's atoms) in the ``target`` units, as the OpenMM
        quantity of a float32 array reused every frame (the store copies it)."""
        converter, openmm_unit = self._to[target]
        magnitude = quantity._value
        if self._subset is not None:
            magnitude = magnitude[self._subset]
        out = self._scratch.get(name)
        if out is None or out.shape != magnitude.shape:
            out = self._scratch[name] = np.empty(magnitude.shape, np.float32)
        np.multiply(magnitude, converter.factor(quantity.unit), out=out, casting="same_kind")
        return unit.Quantity(out, openmm_unit)

    def _report_amber(self, simulation: Any, state: Any) -> None:
        # OpenMM quantities (cheap to make, unlike pint's) in the file's units: the store
        # maps each OpenMM unit to the variable's once, then checks its identity.
        if self._store is None:
            self._store = self._open_amber(simulation)
        time_ps = state.getTime()
        time_ps = time_ps._value * self._to["picosecond"][0].factor(time_ps.unit)
        self._node("time").append(unit.Quantity(np.float32(time_ps), unit.picosecond))
        positions = state.getPositions(asNumpy=True)
        self._node("coordinates").append(self._amber_value("coordinates", positions, "angstrom"))
        if self._want["velocities"]:
            velocities = state.getVelocities(asNumpy=True)
            self._node("velocities").append(
                self._amber_value("velocities", velocities, "angstrom/picosecond")
            )
        if self._want["forces"]:
            forces = state.getForces(asNumpy=True)
            self._node("forces").append(
                self._amber_value("forces", forces, "kilocalorie/mole/angstrom")
            )
        if self._box:
            vectors = state.getPeriodicBoxVectors(asNumpy=True)
            factor = self._to["angstrom"][0].factor(vectors.unit)
            lengths, angles = cell_lengths_and_angles(vectors._value * factor)
            self._node("cell_lengths").append(unit.Quantity(lengths, unit.angstrom))
            self._node("cell_angles").append(unit.Quantity(angles, unit.degree))

    # -- closing --------------------------------------------------------------------------
    @property
    def store(self) -> StorageInterface | None:
        """The store the reporter writes to (None before an AMBER reporter's first report)."""
        return self._store

    def flush(self, durable: bool = False) -> None:
        """Make every report so far reach the file (``durable``: fsynced too)."""
        if self._store is not None:
            self._store.flush(durable)

    def close(self) -> None:
        """Write what is pending and close the file the reporter opened (a store passed in
        is flushed and stays open). Closing twice is allowed.

        Raises
        ------
        BackgroundWriteError
            Writing failed behind the simulation's back.
        """
        if self._closed:
            return
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._store is None:
            return
        if self._owns_store:
            self._store.close()
        elif not self._store.closed:
            self._store.flush()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_store(store: StorageInterface) -> None:
    """A reporter the program dropped without close(): close its file (not on a writer
    thread, which may hold the library lock another store needs to close)."""
    if not on_writer_thread():
        store.close()


def cell_lengths_and_angles(vectors: Any) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The lengths (in the vectors' unit) and angles (degree) of a unit cell's vectors."""
    a, b, c = np.asarray(vectors, dtype=np.float64)
    lengths = np.array([math.sqrt(a @ a), math.sqrt(b @ b), math.sqrt(c @ c)])
    alpha = math.degrees(math.acos(np.clip(b @ c / (lengths[1] * lengths[2]), -1.0, 1.0)))
    beta = math.degrees(math.acos(np.clip(a @ c / (lengths[0] * lengths[2]), -1.0, 1.0)))
    gamma = math.degrees(math.acos(np.clip(a @ b / (lengths[0] * lengths[1]), -1.0, 1.0)))
    return lengths, np.array([alpha, beta, gamma])
