"""``writebehind export FILE --amber OUT``: a writebehind trajectory as an AMBER one."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pint
import pytest

from writebehind import NetCDFIODriver, StorageInterface
from writebehind._export import export_amber, plan_export
from writebehind._inspect import inspect_file
from writebehind.cli import main

UREG = pint.get_application_registry()
ATOMS, FRAMES = 4, 7


def frames(count: int = FRAMES, atoms: int = ATOMS) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, atoms, 3))


def write_trajectory(path: Path, group: str = "", **variables: object) -> None:
    """A file whose variables (under ``group``) get one entry per frame of each value."""
    with StorageInterface(NetCDFIODriver(path, "w")) as store:
        for name, values in variables.items():
            node = store[f"{group}/{name}" if group else name]
            for value in values:  # type: ignore[attr-defined]
                node.append(value)


def export(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main(["export", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_export_converts_units_to_the_amber_convention(tmp_path, capsys):
    positions, velocities = frames(), frames()
    write_trajectory(
        tmp_path / "t.nc",
        positions=positions * UREG.nanometer,
        velocities=velocities * UREG("nanometer/picosecond"),
        time=np.arange(FRAMES) * UREG.femtosecond,
    )
    status, out, _ = export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc")
    assert status == 0 and "7 frames of 4 atoms" in out
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        assert ds.Conventions == "AMBER"
        np.testing.assert_array_equal(ds["coordinates"][:], np.float32(positions * 10.0))
        np.testing.assert_array_equal(ds["velocities"][:], np.float32(velocities * 10.0))
        np.testing.assert_array_equal(ds["time"][:], np.float32(np.arange(FRAMES) * 0.001))
        assert "cell_lengths" not in ds.variables and "forces" not in ds.variables


def test_export_reads_and_writes_a_block_of_frames_at_a_time(tmp_path, capsys):
    positions = frames(FRAMES)
    write_trajectory(tmp_path / "t.nc", positions=positions * UREG.angstrom)
    plan = plan_export(inspect_file(str(tmp_path / "t.nc")))
    reads: list[tuple[str, int, int]] = []
    with StorageInterface(NetCDFIODriver(tmp_path / "t.nc", "r")) as store:

        def read(path, start, stop):
            reads.append((path, start, stop))
            return store[path].read(slice(start, stop))

        export_amber(plan, read, str(tmp_path / "a.nc"), block_frames=3)
    assert reads == [("positions", 0, 3), ("positions", 3, 6), ("positions", 6, 7)]
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        np.testing.assert_array_equal(ds["coordinates"][:], np.float32(positions))
        np.testing.assert_array_equal(ds["time"][:], np.arange(FRAMES))  # no time: the index


def test_export_turns_box_vectors_into_lengths_and_angles(tmp_path, capsys):
    # a triclinic cell: a along x, b at 60 degrees from a in the xy plane, c along z
    vectors = np.array([[2.0, 0, 0], [1.0, np.sqrt(3.0), 0], [0, 0, 3.0]])
    write_trajectory(
        tmp_path / "t.nc",
        positions=frames(2) * UREG.nanometer,
        box_vectors=[vectors * UREG.nanometer] * 2,
    )
    assert export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc")[0] == 0
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        np.testing.assert_allclose(ds["cell_lengths"][:], [[20.0, 20.0, 30.0]] * 2)
        np.testing.assert_allclose(ds["cell_angles"][:], [[90.0, 90.0, 60.0]] * 2)


def test_export_takes_box_lengths_as_a_rectangular_box(tmp_path, capsys):
    write_trajectory(
        tmp_path / "t.nc",
        positions=frames(2) * UREG.nanometer,
        cell=[np.array([1.0, 2.0, 3.0]) * UREG.nanometer] * 2,
    )
    status, _, _ = export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc", "--box", "cell")
    assert status == 0
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        np.testing.assert_allclose(ds["cell_lengths"][:], [[10.0, 20.0, 30.0]] * 2)
        np.testing.assert_allclose(ds["cell_angles"][:], [[90.0, 90.0, 90.0]] * 2)


def test_export_finds_variables_in_a_group_under_other_names(tmp_path, capsys):
    positions = frames()
    write_trajectory(tmp_path / "t.nc", group="run/replica0", xyz=positions * UREG.nanometer)
    status, _, _ = export(
        capsys,
        tmp_path / "t.nc",
        "--amber",
        tmp_path / "a.nc",
        "--group",
        "run/replica0",
        "--positions",
        "xyz",
    )
    assert status == 0
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        np.testing.assert_array_equal(ds["coordinates"][:], np.float32(positions * 10.0))


def test_export_leaves_out_what_it_is_told_to(tmp_path, capsys):
    write_trajectory(
        tmp_path / "t.nc",
        positions=frames() * UREG.nanometer,
        velocities=frames() * UREG("nanometer/picosecond"),
    )
    argv = (tmp_path / "t.nc", "--amber", tmp_path / "a.nc", "--without", "velocities")
    assert export(capsys, *argv)[0] == 0
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        assert "velocities" not in ds.variables


def test_export_takes_unitless_values_in_openmms_units_when_told(tmp_path, capsys):
    positions = frames()
    write_trajectory(tmp_path / "t.nc", positions=positions)
    argv = (tmp_path / "t.nc", "--amber", tmp_path / "a.nc", "--assume-openmm-units")
    assert export(capsys, *argv)[0] == 0
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        np.testing.assert_array_equal(ds["coordinates"][:], np.float32(positions * 10.0))


# -- errors: one line, status 1, and no OUT left behind ----------------------------------
def refused(capsys, tmp_path: Path, *argv: object) -> str:
    status, out, err = export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc", *argv)
    assert status == 1 and out == ""
    assert err.startswith("writebehind: error: ") and err.count("\n") == 1
    assert not (tmp_path / "a.nc").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["t.nc"]  # no partial file either
    return err


def test_export_without_positions_names_the_groups_that_have_them(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", group="replica0", positions=frames() * UREG.nanometer)
    err = refused(capsys, tmp_path)
    assert "no 'positions' variable in the root group" in err and "replica0" in err
    assert "--group" in err


def test_export_of_a_variable_that_is_not_there_names_it(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames() * UREG.nanometer)
    assert "no variable 'vel'" in refused(capsys, tmp_path, "--velocities", "vel")


def test_export_refuses_values_without_units(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames())
    err = refused(capsys, tmp_path)
    assert "'positions' has no units" in err and "--assume-openmm-units" in err


def test_export_refuses_units_pint_does_not_know(tmp_path, capsys):
    with netCDF4.Dataset(tmp_path / "t.nc", "w") as ds:
        ds.createDimension("frame", None)
        ds.createDimension("atom", 2)
        ds.createDimension("xyz", 3)
        variable = ds.createVariable("positions", "f8", ("frame", "atom", "xyz"))
        variable.units = "parsec_of_cheese"
        variable[0:2] = np.ones((2, 2, 3))
    assert "unknown units 'parsec_of_cheese'" in refused(capsys, tmp_path)


def test_export_refuses_units_of_another_kind(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames() * UREG.second)
    assert "'positions' is in second, which cannot convert to angstrom" in refused(capsys, tmp_path)


def test_export_refuses_ragged_frames(tmp_path, capsys):
    write_trajectory(
        tmp_path / "t.nc",
        positions=frames(FRAMES) * UREG.nanometer,
        velocities=frames(FRAMES - 1) * UREG("nanometer/picosecond"),
    )
    err = refused(capsys, tmp_path)
    assert "ragged frames" in err and "positions 7" in err and "velocities 6" in err


def test_export_refuses_velocities_of_another_atom_count(tmp_path, capsys):
    write_trajectory(
        tmp_path / "t.nc",
        positions=frames(atoms=ATOMS) * UREG.nanometer,
        velocities=frames(atoms=ATOMS + 1) * UREG("nanometer/picosecond"),
    )
    assert "shape (5, 3), not (4, 3)" in refused(capsys, tmp_path)


def test_export_refuses_positions_that_are_not_atoms_by_3(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=np.ones((FRAMES, 4, 2)) * UREG.nanometer)
    assert "not (atoms, 3)" in refused(capsys, tmp_path)


def test_export_refuses_to_replace_out_unless_told(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames() * UREG.nanometer)
    (tmp_path / "a.nc").write_text("keep me")
    status, _, err = export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc")
    assert status == 1 and "--overwrite" in err
    assert (tmp_path / "a.nc").read_text() == "keep me"
    argv = (tmp_path / "t.nc", "--amber", tmp_path / "a.nc", "--overwrite")
    assert export(capsys, *argv)[0] == 0
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        assert len(ds.dimensions["frame"]) == FRAMES


def test_export_of_a_missing_file_is_one_line(tmp_path, capsys):
    status, _, err = export(capsys, tmp_path / "none.nc", "--amber", tmp_path / "a.nc")
    assert status == 1 and "no such file" in err


# -- a Reporter's file, read by mdtraj and MDAnalysis -------------------------------------
def test_a_reporters_file_exports_to_what_mdtraj_and_mdanalysis_read(tmp_path, capsys):
    openmm = pytest.importorskip("openmm", reason="OpenMM is not installed")
    mdtraj = pytest.importorskip("mdtraj", reason="mdtraj is not installed")
    mda = pytest.importorskip("MDAnalysis", reason="MDAnalysis is not installed")
    from openmm import app, unit

    from writebehind.openmm import Reporter

    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, boxSize=openmm.Vec3(1.6, 1.6, 1.6) * unit.nanometer)
    system = forcefield.createSystem(
        modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer
    )
    integrator = openmm.LangevinMiddleIntegrator(300, 1, 0.002)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(modeller.topology, system, integrator, platform, {"Threads": "1"})
    simulation.context.setPositions(modeller.positions)
    with Reporter(tmp_path / "t.nc", 5, velocities=True) as reporter:
        simulation.reporters.append(reporter)
        simulation.step(20)
    pdb = tmp_path / "water.pdb"
    with open(pdb, "w") as file:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, file)
    argv = (tmp_path / "t.nc", "--amber", tmp_path / "a.nc", "--block-frames", 3)
    assert export(capsys, *argv)[0] == 0

    with StorageInterface(NetCDFIODriver(tmp_path / "t.nc", "r")) as store:
        angstrom = np.float32(store.positions.read().m_as("angstrom"))
        velocities = np.float32(store.velocities.read().m_as("angstrom/picosecond"))
        times = store.time.read().m_as("picosecond")
    trajectory = mdtraj.load(str(tmp_path / "a.nc"), top=str(pdb))
    assert trajectory.n_frames == 4
    np.testing.assert_allclose(trajectory.xyz, angstrom / 10, rtol=1e-6)
    np.testing.assert_allclose(trajectory.time, times, rtol=1e-6)
    np.testing.assert_allclose(trajectory.unitcell_lengths, [[1.6] * 3] * 4, rtol=1e-6)
    universe = mda.Universe(str(pdb), str(tmp_path / "a.nc"))
    assert len(universe.trajectory) == 4
    for ts, expected, expected_velocities in zip(
        universe.trajectory, angstrom, velocities, strict=True
    ):
        np.testing.assert_array_equal(ts.positions, expected)
        np.testing.assert_array_equal(ts.velocities, expected_velocities)
        np.testing.assert_allclose(ts.dimensions, [16, 16, 16, 90, 90, 90], rtol=1e-6)


def test_export_into_a_missing_directory_is_one_line(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames() * UREG.nanometer)
    status, _, err = export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "no" / "a.nc")
    assert status == 1 and "cannot write" in err and err.count("\n") == 1


def test_an_export_that_fails_midway_leaves_no_file(tmp_path):
    write_trajectory(tmp_path / "t.nc", positions=frames() * UREG.nanometer)
    plan = plan_export(inspect_file(str(tmp_path / "t.nc")))

    def read(path, start, stop):
        if start > 0:
            raise RuntimeError("the disk went away")
        return frames(stop - start) * UREG.nanometer

    with pytest.raises(RuntimeError, match="went away"):
        export_amber(plan, read, str(tmp_path / "a.nc"), block_frames=2)
    assert [p.name for p in tmp_path.iterdir()] == ["t.nc"]


# -- --append: continuing an AMBER trajectory ---------------------------------------------
def test_export_appends_to_an_amber_trajectory(tmp_path, capsys):
    first, second = frames(3), frames(2) + 100
    write_trajectory(tmp_path / "one.nc", positions=first * UREG.nanometer)
    write_trajectory(tmp_path / "two.nc", positions=second * UREG.nanometer)
    assert export(capsys, tmp_path / "one.nc", "--amber", tmp_path / "a.nc")[0] == 0
    status, out, _ = export(capsys, tmp_path / "two.nc", "--amber", tmp_path / "a.nc", "--append")
    assert status == 0 and "2 frames of 4 atoms appended" in out
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        expected = np.float32(np.concatenate([first, second]) * 10.0)
        np.testing.assert_array_equal(ds["coordinates"][:], expected)


def test_export_refuses_to_append_other_atoms(tmp_path, capsys):
    write_trajectory(tmp_path / "one.nc", positions=frames(3) * UREG.nanometer)
    write_trajectory(tmp_path / "two.nc", positions=frames(2, atoms=5) * UREG.nanometer)
    assert export(capsys, tmp_path / "one.nc", "--amber", tmp_path / "a.nc")[0] == 0
    status, _, err = export(capsys, tmp_path / "two.nc", "--amber", tmp_path / "a.nc", "--append")
    assert status == 1 and "holds frames of 4 atoms, not 5" in err and err.count("\n") == 1
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        assert len(ds.dimensions["frame"]) == 3


def test_export_appending_to_a_missing_file_is_one_line(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames() * UREG.nanometer)
    status, _, err = export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc", "--append")
    assert status == 1 and "No such AMBER trajectory" in err


def test_an_append_that_fails_midway_keeps_the_frames_counted_before(tmp_path, capsys):
    write_trajectory(tmp_path / "t.nc", positions=frames(3) * UREG.nanometer)
    assert export(capsys, tmp_path / "t.nc", "--amber", tmp_path / "a.nc")[0] == 0
    plan = plan_export(inspect_file(str(tmp_path / "t.nc")))

    def read(path, start, stop):
        if start > 0:
            raise RuntimeError("the disk went away")
        return frames(stop - start) * UREG.nanometer

    with pytest.raises(RuntimeError, match="went away"):
        export_amber(plan, read, str(tmp_path / "a.nc"), block_frames=2, append=True)
    with netCDF4.Dataset(tmp_path / "a.nc") as ds:
        assert len(ds.dimensions["frame"]) == 3  # the first block written, not counted
