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

import weakref
from typing import Any, NamedTuple

import anyio.to_thread
import numpy as np
import openmm
from openmm import unit

from . import __version__ as _writebehind_version
from ._async_store import AsyncStorageInterface
from ._engine import Engine, FrameLayout, on_writer_thread
from ._legacy import NetCDFIODriver
from ._node import StorageInterfaceDirVar
from ._store import StorageInterface, StoreBase
from .codecs.openmm_units import pint_units_of
from .drivers.amber import AmberDriver, cell_lengths_and_angles
from .drivers.netcdf import LIBRARY_LOCK

__all__ = ["Reporter", "SerializedReporter", "cell_lengths_and_angles"]

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


class _Frame(NamedTuple):
    """What every report after the first appends, in one ``Engine.append_frame``."""

    engine: Engine
    layout: FrameLayout  # the variables, and AMBER's unit conversions (scales)
    units: dict[str, Any]  # the OpenMM units of the first report's time, box, energies


_VECTOR_KINDS = {
    "positions": openmm.State.Positions,
    "velocities": openmm.State.Velocities,
    "forces": openmm.State.Forces,
}
_ACCESSORS = {"positions": "getPositions", "velocities": "getVelocities", "forces": "getForces"}
_MD_UNITS = {
    "positions": unit.nanometer,
    "velocities": unit.nanometer / unit.picosecond,
    "forces": unit.kilojoule_per_mole / unit.nanometer,
}
_RAW_VECTORS = hasattr(openmm.State, "_getVectorAsNumpy") and hasattr(
    openmm.State, "_getNumParticles"
)


def _stored_in(node: Any, openmm_unit: Any) -> bool:
    """Whether the variable of ``node`` stores quantities in ``openmm_unit`` (as the
    store's encoder decides: then it stores a magnitude as it is)."""
    units = node.variable.units
    if units is None:
        return False
    pint_units, text = pint_units_of(openmm_unit)
    return bool(text == units or pint_units == pint_units._REGISTRY.parse_units(units))


class Reporter:
    """Stores an OpenMM simulation's trajectory, write-behind, every ``report_interval`` steps.

    Parameters
    ----------
    file_or_store : str, os.PathLike, StorageInterface or AsyncStorageInterface
        A path: the reporter opens the file as ``mode`` says and closes it in
        :meth:`close`. A store (``format="writebehind"`` only): the reporter stores under
        ``group`` in it and leaves it open. An async store's appends are made from
        OpenMM's thread, which cannot await, through the store's synchronous append (the
        same checks and copy); see docs/openmm.md for async programs.
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
    mode : {"w", "a", None}
        For a path, as the store's modes: ``"w"`` (the default, as OpenMM's reporters)
        creates the file, replacing one that exists; ``"a"`` appends to a file that must
        exist; None appends to a file that exists, or creates it. Appending continues the
        file's variables (an AMBER file must hold the same atoms and the same variables:
        velocities, forces, box; the first report raises ``ValueError`` otherwise).
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
        mode: str | None = "w",
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
        if mode not in ("w", "a", None):
            raise ValueError(f"mode must be 'w', 'a' or None, not {mode!r}")
        self._mode = mode
        self._owns_store = not isinstance(file_or_store, StoreBase)
        if not self._owns_store and format == "amber":
            raise ValueError("format='amber' writes its own file: pass a path, not a store")
        self._path = file_or_store if self._owns_store else None
        self._store: StoreBase[Any] | None = None
        self._root: StorageInterfaceDirVar | None = None
        if format == "writebehind":
            self._store = (
                StorageInterface(NetCDFIODriver(file_or_store, mode))
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
        self._scratch: dict[str, Any] = {}  # float32 OpenMM quantities, reused
        self._frame: _Frame | None = None  # the variables of a frame, once the first is stored
        self._checked_only = False  # every report through the encoders (see _make_frame)
        self._vectors: dict[int, Any] = {}  # float64 arrays OpenMM's vectors are read into
        self._raw_vectors = False  # read them with OpenMM's _getVectorAsNumpy (see _vector)
        self._frame_box: list[Any] | None = None  # the box _frame_cell was computed for
        self._frame_cell: list[Any] = []
        self._box_key: tuple[bytes, Any] | None = None  # the box _box_cell was computed for
        self._box_cell: tuple[Any, Any] = (None, None)

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
        if self._frame is not None:
            payloads = self._frame_payloads(simulation, state)
            if payloads is not None:
                self._frame.engine.append_frame(self._frame.layout, payloads)
                return
        # The first report (or one whose units are not the first's) goes through the
        # store's encoders, which check each value and fix the variables' units and shapes.
        if self._format == "amber":
            self._report_amber(simulation, state)
        else:
            self._report_writebehind(simulation, state)
        if self._frame is None and not self._checked_only:
            self._frame = self._make_frame(state)
            self._checked_only = self._frame is None

    # -- writebehind format -------------------------------------------------------------
    def _node(self, name: str) -> Any:
        node = self._nodes.get(name)
        if node is None:
            assert self._store is not None
            path = f"{self._group}/{name}" if self._group else name
            if self._root is None:  # the sync face of the store, even of an async one
                self._store._root_node()  # an async store not yet open says so here
                self._root = StorageInterfaceDirVar("", self._store._core, store=self._store)
            node = self._nodes[name] = self._root[path]
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
            self._mode,
            n_atoms=n_atoms,
            velocities=self._want["velocities"],
            forces=self._want["forces"],
            box=self._box,
            program="writebehind",
            program_version=_writebehind_version,
        )
        store = StorageInterface(driver)
        written = {"time", "coordinates", "velocities", "forces", "cell_lengths", "cell_angles"}
        others = [name for name in driver.record_variables if name not in written]
        if others:
            store.close()
            raise ValueError(
                f"{self._path!r} has variables per frame this reporter does not write "
                f"({', '.join(others)}): write a new file (mode 'w')"
            )
        # AMBER itself stores velocities scaled (scale_factor 20.455); the store writes no
        # packed variable (it would have to invert the packing), so say so now.
        packed = [
            name
            for name in driver.record_variables
            if {"scale_factor", "add_offset"} & set(driver.get_attrs(name))
        ]
        if packed:
            store.close()
            raise ValueError(
                f"{self._path!r} stores {', '.join(packed)} scaled (scale_factor, as AMBER "
                "writes velocities): writebehind does not append to packed variables; "
                "write a new file (mode 'w'), or append without them"
            )
        self._finalizer = weakref.finalize(self, _close_store, store)
        return store

    def _amber_value(self, name: str, quantity: Any, target: str) -> Any:
        """``quantity`` (of the subset's atoms) in the ``target`` units, as the OpenMM
        quantity of a float32 array reused every frame (the store copies it)."""
        converter, openmm_unit = self._to[target]
        magnitude = quantity._value
        if self._subset is not None:
            magnitude = magnitude[self._subset]
        # The quantity, not only its array, is kept: making one costs more than the
        # conversion at a few atoms.
        value = self._scratch.get(name)
        if value is None or value._value.shape != magnitude.shape:
            value = unit.Quantity(np.empty(magnitude.shape, np.float32), openmm_unit)
            self._scratch[name] = value
        out = value._value
        np.multiply(magnitude, converter.factor(quantity.unit), out=out, casting="same_kind")
        return value

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
            lengths, angles = self._cell(state.getPeriodicBoxVectors(asNumpy=True))
            self._node("cell_lengths").append(lengths)
            self._node("cell_angles").append(angles)

    def _cell(self, vectors: Any) -> tuple[Any, Any]:
        """The cell lengths (angstrom) and angles (degree) of the box ``vectors``, as OpenMM
        quantities; computed again only when the vectors' 9 floats or unit change."""
        # A constant-volume run's box never changes: comparing its bytes costs a fraction
        # of the trigonometry. The store copies what is appended, so the quantities of the
        # last box can be appended again.
        key = (vectors._value.tobytes(), vectors.unit)
        if key != self._box_key:
            factor = self._to["angstrom"][0].factor(vectors.unit)
            lengths, angles = cell_lengths_and_angles(vectors._value * factor)
            self._box_cell = (
                unit.Quantity(lengths, unit.angstrom),
                unit.Quantity(angles, unit.degree),
            )
            self._box_key = key
        return self._box_cell

    # -- every report after the first: one engine call -------------------------------------
    def _frame_names(self) -> list[str]:
        """The variables of a frame, in the order of ``_frame_payloads``."""
        vectors = [name for name in ("positions", "velocities", "forces") if self._want[name]]
        if self._format == "amber":
            names = ["time", *("coordinates" if n == "positions" else n for n in vectors)]
            return names + (["cell_lengths", "cell_angles"] if self._box else [])
        names = ["step", "time", *vectors]
        if self._want["energy"]:
            names += ["potential_energy", "kinetic_energy"]
        return names + (["box_vectors"] if self._box else [])

    def _make_frame(self, state: Any) -> _Frame | None:
        """The frame layout the first report fixed: each variable's staging state and the
        factor its magnitude is scaled by (AMBER's units), and the units OpenMM gave.

        None when a variable's stored units are not those of the magnitudes the frame
        appends (a file continued whose variables hold other units): the encoders convert
        those, so every report goes through them.
        """
        assert self._store is not None
        names = self._frame_names()
        variables = []
        appended = self._frame_units(state)
        for name in names:
            node = self._node(name)
            if name in appended and not _stored_in(node, appended[name]):
                return None
            staging = node._var
            assert staging is not None  # the first report appended to every one
            variables.append(staging)
        scales: list[float | None] = [None] * len(names)
        if self._format == "amber":
            vector_units = {
                "coordinates": ("angstrom", unit.nanometer),
                "velocities": ("angstrom/picosecond", unit.nanometer / unit.picosecond),
                "forces": ("kilocalorie/mole/angstrom", unit.kilojoule_per_mole / unit.nanometer),
            }
            for i, name in enumerate(names):
                if name == "time":
                    scales[i] = self._to["picosecond"][0].factor(state.getTime().unit)
                elif name in vector_units:
                    target, md_unit = vector_units[name]
                    scales[i] = self._to[target][0].factor(md_unit)
        units = {"time": state.getTime().unit}
        if self._box:
            units["box"] = state.getPeriodicBoxVectors().unit
        if self._want["energy"]:
            units["energy"] = state.getPotentialEnergy().unit
        self._check_vector_reads(state)
        engine = self._store._core.engine
        return _Frame(engine, engine.frame_layout(variables, scales), units)

    def _frame_units(self, state: Any) -> dict[str, Any]:
        """The OpenMM unit of each quantity a frame appends, as appended (after its scale)."""
        if self._format == "amber":
            to = {name: target for name, (_, target) in self._to.items()}
            return {
                "time": to["picosecond"],
                "coordinates": to["angstrom"],
                "velocities": to["angstrom/picosecond"],
                "forces": to["kilocalorie/mole/angstrom"],
                "cell_lengths": to["angstrom"],
                "cell_angles": unit.degree,
            }
        units = {"time": state.getTime().unit, **_MD_UNITS}
        if self._want["energy"]:
            energy = state.getPotentialEnergy().unit
            units.update(potential_energy=energy, kinetic_energy=energy)
        if self._box:
            units["box_vectors"] = state.getPeriodicBoxVectors().unit
        return units

    def _check_vector_reads(self, state: Any) -> None:
        """Read OpenMM's vectors into reused arrays only if that gives exactly what
        ``getPositions(asNumpy=True)``... gave for the first report (see ``_vector``)."""
        self._raw_vectors = _RAW_VECTORS
        for name, kind in _VECTOR_KINDS.items():
            if self._want[name] and self._raw_vectors:
                public = getattr(state, _ACCESSORS[name])(asNumpy=True)
                if public.unit is not _MD_UNITS[name] and public.unit != _MD_UNITS[name]:
                    self._raw_vectors = False
                    continue
                try:
                    raw = self._vector(state, kind)
                except Exception:  # an OpenMM whose private reader differs
                    self._raw_vectors = False
                    continue
                expected = self._atoms(public)._value
                if not (raw.shape == expected.shape and np.array_equal(raw, expected)):
                    self._raw_vectors = False

    def _vector(self, state: Any, kind: int) -> Any:
        """The state's positions, velocities or forces (``kind``: ``openmm.State.Positions``...)
        of the subset's atoms, as float64 in OpenMM's units (nanometer...).

        OpenMM's ``getPositions(asNumpy=True)`` reads the vectors with the State's
        ``_getVectorAsNumpy`` into a new array, after ``'_positionsNumpy' in dir(self)``
        (5 us) and before making a Quantity (2 us): 13 us a call at 22 atoms, three times
        what ``getState`` itself costs. Read straight into a reused array, the same numbers
        cost 0.3 us. ``_getVectorAsNumpy`` is OpenMM's, not public: it is used only where
        the first report showed it gives what the public call gives (``_check_vector_reads``).
        """
        out = self._vectors.get(kind)
        if out is None:
            out = self._vectors[kind] = np.empty((state._getNumParticles(), 3), np.float64)
        state._getVectorAsNumpy(kind, out)
        return out if self._subset is None else out[self._subset]

    def _vector_public(self, state: Any, name: str) -> Any:
        value = getattr(state, _ACCESSORS[name])(asNumpy=True)
        if value.unit is not _MD_UNITS[name] and value.unit != _MD_UNITS[name]:
            return None
        return self._atoms(value)._value

    def _frame_payloads(self, simulation: Any, state: Any) -> list[Any] | None:
        """This state's entries of the frame's variables (None: a unit is not the first
        report's, and the store's encoders must convert it)."""
        frame = self._frame
        assert frame is not None
        units = frame.units
        time = state.getTime()
        if time.unit is not units["time"]:
            return None
        payloads: list[Any] = [] if self._format == "amber" else [int(simulation.currentStep)]
        payloads.append(time._value)
        for name, kind in _VECTOR_KINDS.items():
            if self._want[name]:
                vector = (
                    self._vector(state, kind)
                    if self._raw_vectors
                    else self._vector_public(state, name)
                )
                if vector is None:
                    return None
                payloads.append(vector)
        if self._format == "writebehind" and self._want["energy"]:
            potential, kinetic = state.getPotentialEnergy(), state.getKineticEnergy()
            if potential.unit is not units["energy"] or kinetic.unit is not units["energy"]:
                return None
            payloads += [potential._value, kinetic._value]
        if self._box:
            vectors = state.getPeriodicBoxVectors()
            if vectors.unit is not units["box"]:
                return None
            if self._format == "amber":
                payloads += self._cell_magnitudes(vectors)
            else:
                payloads.append(np.array(vectors._value, dtype=np.float64))
        return payloads

    def _cell_magnitudes(self, vectors: Any) -> list[Any]:
        """The cell lengths (angstrom) and angles (degree) of the box ``vectors`` (a
        Quantity of 3 ``Vec3``), computed again only when the vectors change."""
        if vectors._value != self._frame_box:
            self._frame_box = list(vectors._value)
            factor = self._to["angstrom"][0].factor(vectors.unit)
            box = np.array(vectors._value, dtype=np.float64) * factor
            self._frame_cell = list(cell_lengths_and_angles(box))
        return self._frame_cell

    # -- closing --------------------------------------------------------------------------
    @property
    def store(self) -> StoreBase[Any] | None:
        """The store the reporter writes to (None before an AMBER reporter's first report)."""
        return self._store

    def flush(self, durable: bool = False) -> None:
        """Make every report so far reach the file (``durable``: fsynced too)."""
        if self._store is not None:
            self._store._core.engine.flush(durable)

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
        if isinstance(self._store, StorageInterface) and self._owns_store:
            self._store.close()
        elif not self._store.closed:
            self._store._core.engine.flush()

    async def aclose(self) -> None:
        """:meth:`close` for async programs: the same, waiting without blocking the loop.

        Raises
        ------
        BackgroundWriteError
            Writing failed behind the simulation's back.
        """
        store = self._store
        if isinstance(store, AsyncStorageInterface) and not self._closed:
            self._closed = True
            if not store.closed:
                await store.flush()
            return
        await anyio.to_thread.run_sync(self.close)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_store(store: StorageInterface) -> None:
    """A reporter the program dropped without close(): close its file (not on a writer
    thread, which may hold the library lock another store needs to close)."""
    if not on_writer_thread():
        store.close()


class SerializedReporter:
    """Another reporter whose reports hold writebehind's library lock.

    netCDF-C and HDF5 are not thread-safe. A reporter that calls netCDF4 on the simulation's
    thread (openmmtools.storage, a reporter of your own; mdtraj's NetCDFReporter when it
    uses netCDF4) while a writebehind writer thread writes corrupts the library (seen:
    "NetCDF: HDF error", then a crash). ``reporters.append(SerializedReporter(other))``
    makes each of ``other``'s reports take the lock writebehind's writers hold, so they
    take turns. Do not wrap a reporter that writes through writebehind itself: its flush
    would wait for a writer that waits for the lock.
    """

    def __init__(self, reporter: Any):
        self.reporter = reporter

    def describeNextReport(self, simulation: Any) -> Any:
        return self.reporter.describeNextReport(simulation)

    def report(self, simulation: Any, state: Any) -> None:
        with LIBRARY_LOCK:
            self.reporter.report(simulation, state)

    def __getattr__(self, name: str) -> Any:  # close(), flush()... of the reporter
        return getattr(self.reporter, name)
