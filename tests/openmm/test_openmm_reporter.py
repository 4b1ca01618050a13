"""writebehind.openmm.Reporter in a real OpenMM simulation, in both formats."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import netCDF4
import numpy as np
import pint
import pytest

openmm = pytest.importorskip("openmm", reason="OpenMM is not installed (pip install -e '.[md]')")
from openmm import app, unit  # noqa: E402

from writebehind import NetCDFIODriver, StorageInterface  # noqa: E402
from writebehind.drivers.amber import AmberDriver  # noqa: E402
from writebehind.openmm import Reporter  # noqa: E402

UREG = pint.get_application_registry()
STEPS, INTERVAL = 20, 5


class StateRecorder:
    """A reporter that keeps what OpenMM's own getState gives at the same steps."""

    def __init__(self, interval: int):
        self.interval = interval
        self.states: list[dict[str, np.ndarray]] = []

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        include = ["positions", "velocities", "forces", "energy"]
        return {"steps": steps, "periodic": None, "include": include}

    def report(self, simulation, state):
        self.states.append(
            {
                "step": simulation.currentStep,
                "time": state.getTime().value_in_unit(unit.picosecond),
                "positions": state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
                "velocities": state.getVelocities(asNumpy=True).value_in_unit(
                    unit.nanometer / unit.picosecond
                ),
                "forces": state.getForces(asNumpy=True).value_in_unit(
                    unit.kilojoule_per_mole / unit.nanometer
                ),
                "potential": state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                "box": state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer),
            }
        )


@pytest.fixture(scope="module")
def water_box(tmp_path_factory):
    """A periodic box of 129 TIP3P waters (387 atoms), and its PDB for the MD readers."""
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, boxSize=openmm.Vec3(1.6, 1.6, 1.6) * unit.nanometer)
    system = forcefield.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=0.7 * unit.nanometer,
        constraints=app.HBonds,
    )
    pdb = tmp_path_factory.mktemp("water") / "water.pdb"
    with open(pdb, "w") as file:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, file)
    return modeller, system, pdb


def make_simulation(water_box):
    modeller, system, _ = water_box
    integrator = openmm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds
    )
    integrator.setRandomNumberSeed(1)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(modeller.topology, system, integrator, platform, {"Threads": "1"})
    simulation.context.setPositions(modeller.positions)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    return simulation


def simulate(water_box, *reporters, steps=STEPS):
    simulation = make_simulation(water_box)
    recorder = StateRecorder(INTERVAL)
    simulation.reporters.extend([*reporters, recorder])
    simulation.step(steps)
    return recorder.states


def test_the_writebehind_format_holds_openmms_states_exactly(water_box, tmp_path):
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, velocities=True, forces=True) as reporter:
        states = simulate(water_box, reporter)
    with StorageInterface(NetCDFIODriver(path, "r")) as store:
        assert store.step.read().tolist() == [s["step"] for s in states]
        positions = store.positions.read()
        assert positions.units == UREG.nanometer
        np.testing.assert_array_equal(positions.magnitude, [s["positions"] for s in states])
        np.testing.assert_array_equal(
            store.velocities.read().m_as("nanometer/picosecond"), [s["velocities"] for s in states]
        )
        np.testing.assert_array_equal(
            store.forces.read().m_as("kilojoule/mole/nanometer"), [s["forces"] for s in states]
        )
        np.testing.assert_array_equal(
            store.potential_energy.read().m_as("kilojoule/mole"), [s["potential"] for s in states]
        )
        np.testing.assert_array_equal(
            store.box_vectors.read().m_as("nanometer"), [s["box"] for s in states]
        )
        np.testing.assert_array_equal(store.time.read().m_as("ps"), [s["time"] for s in states])


def test_the_reporter_asks_openmm_only_for_what_it_stores(tmp_path):
    reporter = Reporter(tmp_path / "t.nc", 10, energies=False, box=False)

    class AtStep:
        currentStep = 3

    report = reporter.describeNextReport(AtStep())
    assert report == {"steps": 7, "periodic": None, "include": ["positions"]}
    reporter.close()


def test_reporters_and_the_users_own_values_share_one_store(water_box, tmp_path):
    path = tmp_path / "shared.nc"
    with StorageInterface(NetCDFIODriver(path, "w")) as store:
        store.add_metadata("integrator", "langevin")
        store.temperature.write(300 * unit.kelvin)
        everything = Reporter(store, INTERVAL, group="replica0")
        subset = Reporter(store, 2 * INTERVAL, atom_subset=[0, 1, 2], group="replica0/oxygen")
        states = simulate(water_box, everything, subset)
        everything.close()
        subset.close()
        assert not store.closed  # a store passed in stays open
        store.notes.write("done")
    with StorageInterface(NetCDFIODriver(path, "r")) as store:
        assert store.temperature.read() == UREG.Quantity(300, "kelvin")
        assert store.replica0.positions.read().shape == (len(states), 387, 3)
        np.testing.assert_array_equal(
            store["replica0/oxygen/positions"].read().magnitude,
            [s["positions"][:3] for s in states[1::2]],
        )
        assert store.notes.read() == "done"


def test_the_amber_trajectory_reads_in_mdtraj_and_mdanalysis(water_box, tmp_path):
    mdtraj = pytest.importorskip("mdtraj", reason="mdtraj is not installed")
    mda = pytest.importorskip("MDAnalysis", reason="MDAnalysis is not installed")
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, velocities=True, forces=True, format="amber") as reporter:
        states = simulate(water_box, reporter)
    pdb = water_box[2]
    expected_angstrom = np.array([s["positions"] * 10.0 for s in states], dtype=np.float32)

    trajectory = mdtraj.load(str(path), top=str(pdb))
    assert trajectory.n_frames == len(states)
    np.testing.assert_allclose(trajectory.xyz, expected_angstrom / 10, rtol=1e-6)
    np.testing.assert_allclose(trajectory.time, [s["time"] for s in states], rtol=1e-6)
    np.testing.assert_allclose(trajectory.unitcell_lengths, [[1.6] * 3] * len(states), rtol=1e-6)
    np.testing.assert_allclose(trajectory.unitcell_angles, [[90.0] * 3] * len(states))

    universe = mda.Universe(str(pdb), str(path))
    assert len(universe.trajectory) == len(states)
    for ts, state, expected in zip(universe.trajectory, states, expected_angstrom, strict=True):
        np.testing.assert_array_equal(ts.positions, expected)  # float32 as OpenMM's, in A
        np.testing.assert_allclose(ts.dimensions, [16, 16, 16, 90, 90, 90], rtol=1e-6)
        np.testing.assert_allclose(ts.velocities, np.float32(state["velocities"] * 10.0), rtol=1e-6)
        # stored in kilocalorie/mole/angstrom; MDAnalysis gives kilojoule/mole/angstrom
        np.testing.assert_allclose(ts.forces, state["forces"] / 10.0, rtol=1e-5)


def test_the_amber_file_follows_the_convention(water_box, tmp_path):
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, format="amber", atom_subset=range(3)) as reporter:
        simulate(water_box, reporter)
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF3_64BIT_OFFSET"
        assert ds.Conventions == "AMBER" and ds.ConventionVersion == "1.0"
        assert ds.program == "writebehind" and ds.programVersion
        assert ds.dimensions["frame"].isunlimited() and len(ds.dimensions["frame"]) == 4
        assert len(ds.dimensions["atom"]) == 3
        assert ds["coordinates"].dimensions == ("frame", "atom", "spatial")
        assert ds["coordinates"].dtype == np.float32 and ds["coordinates"].units == "angstrom"
        assert ds["time"].units == "picosecond" and ds["cell_angles"].units == "degree"
        assert ds["cell_lengths"].dtype == np.float64
        assert b"".join(ds["spatial"][:].tolist()) == b"xyz"
        assert "velocities" not in ds.variables


def test_an_amber_reporter_needs_a_path_not_a_store(tmp_path):
    with (
        StorageInterface(NetCDFIODriver(tmp_path / "s.nc", "w")) as store,
        pytest.raises(ValueError, match="path"),
    ):
        Reporter(store, 10, format="amber")


def test_an_amber_file_counts_only_flushed_frames_after_a_kill(tmp_path):
    path = tmp_path / "killed.nc"
    code = f"""
        import os, numpy as np, pint
        from writebehind import StorageInterface
        from writebehind.drivers.amber import AmberDriver
        u = pint.get_application_registry()
        store = StorageInterface(AmberDriver({str(path)!r}, n_atoms=2, box=False))
        for i in range(5):
            store.time.append(np.float32(i) * u.picosecond)
            store.coordinates.append(np.full((2, 3), i, np.float32) * u.angstrom)
            if i == 2:
                store.flush(durable=True)
        os._exit(0)  # no close: as if killed
        """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=True)
    with netCDF4.Dataset(path) as ds:
        assert len(ds.dimensions["frame"]) == 3
        np.testing.assert_array_equal(ds["coordinates"][:, 0, 0], [0, 1, 2])


def test_an_amber_driver_refuses_other_variables(tmp_path):
    with (
        StorageInterface(AmberDriver(tmp_path / "a.nc", n_atoms=1)) as store,
        pytest.raises(ValueError, match="AMBER"),
    ):
        store.energy.append(1.0)


# -- appending to an existing file (mode=None or "a"; "w" replaces) -----------------------
def test_an_amber_reporter_in_append_mode_continues_the_trajectory(water_box, tmp_path):
    mdtraj = pytest.importorskip("mdtraj", reason="mdtraj is not installed")
    path = tmp_path / "traj.nc"
    simulation = make_simulation(water_box)
    recorder = StateRecorder(INTERVAL)
    simulation.reporters.append(recorder)
    for mode in ("w", "a", None):  # three runs, each a reporter of its own
        with Reporter(path, INTERVAL, format="amber", velocities=True, mode=mode) as reporter:
            simulation.reporters.append(reporter)
            simulation.step(STEPS)
            simulation.reporters.remove(reporter)
    states = recorder.states
    trajectory = mdtraj.load(str(path), top=str(water_box[2]))
    assert trajectory.n_frames == len(states) == 3 * STEPS // INTERVAL
    np.testing.assert_allclose(trajectory.time, [s["time"] for s in states], rtol=1e-6)
    np.testing.assert_allclose(trajectory.xyz, [s["positions"] for s in states], rtol=1e-6)


def test_an_amber_reporter_in_mode_w_replaces_the_file(water_box, tmp_path):
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, format="amber") as reporter:
        simulate(water_box, reporter)
    with Reporter(path, INTERVAL, format="amber") as reporter:
        states = simulate(water_box, reporter)
    with netCDF4.Dataset(path) as ds:
        assert len(ds.dimensions["frame"]) == len(states)


def test_an_amber_reporter_in_mode_a_needs_the_file(water_box, tmp_path):
    reporter = Reporter(tmp_path / "missing.nc", INTERVAL, format="amber", mode="a")
    with pytest.raises(FileNotFoundError, match=r"missing\.nc"):
        simulate(water_box, reporter)


def test_appending_frames_of_other_atoms_is_refused(water_box, tmp_path):
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, format="amber") as reporter:
        simulate(water_box, reporter)
    subset = Reporter(path, INTERVAL, format="amber", atom_subset=[0, 1, 2], mode="a")
    with pytest.raises(ValueError, match="holds frames of 387 atoms, not 3"):
        simulate(water_box, subset)
    with netCDF4.Dataset(path) as ds:  # untouched
        assert len(ds.dimensions["frame"]) == STEPS // INTERVAL


def test_appending_without_the_files_velocities_is_refused(water_box, tmp_path):
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, format="amber", velocities=True) as reporter:
        simulate(water_box, reporter)
    reporter = Reporter(path, INTERVAL, format="amber", mode="a")
    with pytest.raises(ValueError, match=r"has velocities .* pass velocities=True"):
        simulate(water_box, reporter)


def test_appending_to_scaled_velocities_is_refused(water_box, tmp_path):
    path = tmp_path / "amber.nc"  # as AMBER writes velocities: in its unit, scaled by 20.455
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.Conventions, ds.ConventionVersion = "AMBER", "1.0"
        ds.createDimension("frame", None)
        ds.createDimension("spatial", 3)
        ds.createDimension("atom", 387)
        ds.createVariable("time", "f4", ("frame",)).units = "picosecond"
        xyz = ("frame", "atom", "spatial")
        ds.createVariable("coordinates", "f4", xyz).units = "angstrom"
        velocities = ds.createVariable("velocities", "f4", xyz)
        velocities.units, velocities.scale_factor = "angstrom/picosecond", np.float32(20.455)
    reporter = Reporter(path, INTERVAL, format="amber", velocities=True, box=False, mode="a")
    with pytest.raises(ValueError, match="stores velocities scaled"):
        simulate(water_box, reporter)


def test_a_writebehind_reporter_in_append_mode_continues_the_file(water_box, tmp_path):
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL) as reporter:
        first = simulate(water_box, reporter)
    with Reporter(path, INTERVAL, mode="a") as reporter:
        second = simulate(water_box, reporter)
    with StorageInterface(NetCDFIODriver(path, "r")) as store:
        np.testing.assert_array_equal(
            store.positions.read().magnitude, [s["positions"] for s in first + second]
        )


def test_a_reporter_refuses_an_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        Reporter(tmp_path / "t.nc", 1, mode="r+")


# -- async programs: OpenMM steps in a worker thread, the loop keeps running ----------------
def expected_positions(states):
    return np.array([s["positions"] for s in states])


@pytest.mark.anyio
@pytest.mark.parametrize("steps_in", ["worker thread", "event loop"])
async def test_an_async_program_stores_frames_into_an_async_store(
    water_box, tmp_path, anyio_backend, steps_in
):
    import writebehind

    simulation = make_simulation(water_box)
    recorder = StateRecorder(INTERVAL)
    async with writebehind.open_async(tmp_path / "run.nc", "w") as store:
        await store.temperature.write(300 * unit.kelvin)  # the program's own values
        reporter = Reporter(store, INTERVAL, velocities=True, group="md")
        simulation.reporters.extend([reporter, recorder])
        for _ in range(STEPS // INTERVAL):
            if steps_in == "worker thread":
                await anyio.to_thread.run_sync(simulation.step, INTERVAL)
            else:
                simulation.step(INTERVAL)
        await reporter.aclose()
        assert not store.closed
        positions = await store["md/positions"].read()
        steps = await store["md/step"].read()
    np.testing.assert_array_equal(positions.m_as("nanometer"), expected_positions(recorder.states))
    assert steps.tolist() == [s["step"] for s in recorder.states]


@pytest.mark.anyio
@pytest.mark.parametrize("format", ["writebehind", "amber"])
async def test_an_async_program_stores_frames_through_a_reporters_own_file(
    water_box, tmp_path, anyio_backend, format
):
    simulation = make_simulation(water_box)
    recorder = StateRecorder(INTERVAL)
    reporter = Reporter(tmp_path / "run.nc", INTERVAL, format=format)
    simulation.reporters.extend([reporter, recorder])
    await anyio.to_thread.run_sync(simulation.step, STEPS)
    await reporter.aclose()
    with netCDF4.Dataset(tmp_path / "run.nc") as ds:
        stored = ds["positions" if format == "writebehind" else "coordinates"][:]
    expected = expected_positions(recorder.states)
    if format == "amber":
        expected = np.float32(expected * 10.0)
    np.testing.assert_array_equal(stored, expected)


@pytest.mark.anyio
async def test_a_reporter_on_an_async_store_not_yet_open_says_so(
    water_box, tmp_path, anyio_backend
):
    import writebehind

    store = writebehind.open_async(tmp_path / "run.nc", "w")
    reporter = Reporter(store, INTERVAL)
    with pytest.raises(RuntimeError, match="not open yet"):
        simulate(water_box, reporter)
    await store.aclose()


# -- another reporter calling netCDF4 in the same simulation ----------------------------------
class NetCDF4Reporter:
    """Writes positions with netCDF4 on the simulation's thread, as openmmtools.storage does,
    and notes whether another thread could take writebehind's library lock meanwhile."""

    def __init__(self, path, interval):
        self.dataset = netCDF4.Dataset(path, "w")
        self.dataset.createDimension("frame", None)
        self.dataset.createDimension("atom", 387)
        self.dataset.createDimension("xyz", 3)
        self.positions = self.dataset.createVariable("positions", "f8", ("frame", "atom", "xyz"))
        self.interval = interval
        self.lock_free_during_report: list[bool] = []

    def describeNextReport(self, simulation):
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": ["positions"]}

    def report(self, simulation, state):
        import threading

        from writebehind.drivers.netcdf import LIBRARY_LOCK

        taken = []

        def try_lock():
            taken.append(LIBRARY_LOCK.acquire(blocking=False))
            if taken[0]:
                LIBRARY_LOCK.release()

        thread = threading.Thread(target=try_lock)
        thread.start()
        thread.join()
        self.lock_free_during_report.append(taken[0])
        index = len(self.positions)
        self.positions[index] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)

    def close(self):
        self.dataset.close()


def test_a_serialized_reporter_reports_holding_writebehinds_lock(water_box, tmp_path):
    from writebehind.openmm import SerializedReporter

    other = NetCDF4Reporter(tmp_path / "other.nc", INTERVAL)
    with Reporter(tmp_path / "traj.nc", INTERVAL) as reporter:
        states = simulate(water_box, reporter, SerializedReporter(other))
    SerializedReporter(other).close()  # the wrapped reporter's own methods pass through
    assert other.lock_free_during_report == [False] * len(states)
    with StorageInterface(NetCDFIODriver(tmp_path / "traj.nc", "r")) as store:
        np.testing.assert_array_equal(store.positions.read().magnitude, expected_positions(states))
    with netCDF4.Dataset(tmp_path / "other.nc") as ds:
        np.testing.assert_array_equal(ds["positions"][:], expected_positions(states))


def test_an_unwrapped_reporter_reports_without_the_lock(water_box, tmp_path):
    other = NetCDF4Reporter(tmp_path / "other.nc", INTERVAL)
    simulate(water_box, other)
    other.close()
    assert other.lock_free_during_report == [True] * (STEPS // INTERVAL)


def test_an_amber_reporter_stores_a_box_that_changes_between_frames(water_box, tmp_path):
    # The reporter reuses the last frame's cell lengths and angles while the box vectors
    # are unchanged: a box changed between frames (a barostat) must be stored as changed.
    path = tmp_path / "traj.nc"
    simulation = make_simulation(water_box)
    boxes = [
        [(1.6, 0, 0), (0, 1.6, 0), (0, 0, 1.6)],
        [(1.6, 0, 0), (0, 1.6, 0), (0, 0, 1.6)],
        [(1.7, 0, 0), (0, 1.65, 0), (0.4, 0.3, 1.6)],  # triclinic, larger
        [(1.6, 0, 0), (0, 1.6, 0), (0, 0, 1.6)],  # back to the first box
    ]
    with Reporter(path, 1, format="amber") as reporter:
        for box in boxes:
            simulation.context.setPeriodicBoxVectors(*(openmm.Vec3(*v) for v in box))
            reporter.report(simulation, simulation.context.getState(positions=True))
    with netCDF4.Dataset(path) as dataset:
        lengths = dataset["cell_lengths"][:]
        angles = dataset["cell_angles"][:]
    cube = ([16.0] * 3, [90.0] * 3)
    c = np.array([4.0, 3.0, 16.0])
    tilted = (
        [17.0, 16.5, float(np.linalg.norm(c))],
        [
            np.degrees(np.arccos(c @ [0, 16.5, 0] / (16.5 * np.linalg.norm(c)))),
            np.degrees(np.arccos(c @ [17.0, 0, 0] / (17.0 * np.linalg.norm(c)))),
            90.0,
        ],
    )
    expected = [cube, cube, tilted, cube]
    np.testing.assert_allclose(lengths, [e[0] for e in expected], rtol=1e-6)
    np.testing.assert_allclose(angles, [e[1] for e in expected], rtol=1e-6)


@pytest.mark.parametrize("format", ["writebehind", "amber"])
def test_a_reporter_whose_fast_read_of_the_vectors_differs_uses_openmms_accessors(
    water_box, tmp_path, monkeypatch, format
):
    # After the first report, the reporter reads positions and velocities with OpenMM's
    # private State._getVectorAsNumpy, once it gave what getPositions(asNumpy=True) gives:
    # a read that differs is not used, and the file holds OpenMM's values all the same.
    monkeypatch.setattr(
        Reporter, "_vector", lambda self, state, kind: np.zeros((state._getNumParticles(), 3))
    )
    path = tmp_path / "traj.nc"
    with Reporter(path, INTERVAL, velocities=True, format=format) as reporter:
        states = simulate(water_box, reporter)
        assert reporter._frame is not None and not reporter._raw_vectors
    with netCDF4.Dataset(path) as dataset:
        name = "coordinates" if format == "amber" else "positions"
        stored = dataset[name][:]
    expected = np.array([s["positions"] for s in states])
    if format == "amber":
        expected = (expected * 10).astype(np.float32)
    np.testing.assert_array_equal(stored, expected)


def test_a_reporter_continuing_variables_of_other_units_converts_every_frame(water_box, tmp_path):
    # The first report goes through the store's encoders, which convert OpenMM's nanometers
    # to the variable's angstroms; the later ones must not append nanometers as they are.
    path = tmp_path / "shared.nc"
    atoms = water_box[0].topology.getNumAtoms()
    with StorageInterface(NetCDFIODriver(path, "w")) as store:
        store["md/positions"].append(np.zeros((atoms, 3)) * UREG.angstrom)
        reporter = Reporter(store, INTERVAL, group="md")
        states = simulate(water_box, reporter)
        reporter.close()
        positions = store["md/positions"].read()
    assert positions.units == UREG.angstrom
    np.testing.assert_allclose(
        positions.magnitude[1:], [s["positions"] * 10 for s in states], rtol=1e-12
    )
