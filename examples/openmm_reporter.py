"""Store an OpenMM simulation with writebehind.openmm.Reporter, in both formats.

Alanine dipeptide in implicit solvent when openmmtools is installed (its test system),
otherwise a small box of TIP3P water built with OpenMM alone; a report every 10 steps.
Then the AMBER trajectory is loaded with mdtraj, when mdtraj is installed.

    pip install 'writebehind[openmm]' mdtraj
    python examples/openmm_reporter.py
"""

from __future__ import annotations

import openmm
from openmm import app, unit

from writebehind import NetCDFIODriver, StorageInterface
from writebehind.openmm import Reporter


def system_and_positions() -> tuple[app.Topology, openmm.System, object]:
    try:
        from openmmtools import testsystems
    except ImportError:
        forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
        modeller = app.Modeller(app.Topology(), [])
        modeller.addSolvent(forcefield, boxSize=openmm.Vec3(2, 2, 2) * unit.nanometer)
        system = forcefield.createSystem(
            modeller.topology, nonbondedMethod=app.PME, constraints=app.HBonds
        )
        return modeller.topology, system, modeller.positions
    alanine = testsystems.AlanineDipeptideImplicit()
    return alanine.topology, alanine.system, alanine.positions


def main() -> None:
    topology, system, positions = system_and_positions()
    integrator = openmm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds
    )
    simulation = app.Simulation(topology, system, integrator)
    simulation.context.setPositions(positions)
    simulation.minimizeEnergy(maxIterations=100)
    with open("topology.pdb", "w") as file:
        app.PDBFile.writeFile(topology, positions, file)

    with (
        Reporter("trajectory.nc", 10, velocities=True) as native,
        Reporter("trajectory_amber.nc", 10, velocities=True, format="amber") as amber,
    ):
        simulation.reporters.extend([native, amber])
        simulation.step(1000)

    with StorageInterface(NetCDFIODriver("trajectory.nc", "r")) as store:
        energies = store.potential_energy.read()
        print(f"{len(store.step.read())} frames; last potential energy {energies[-1]:.1f}")

    try:
        import mdtraj
    except ImportError:
        print("mdtraj is not installed: pip install mdtraj to load trajectory_amber.nc")
        return
    trajectory = mdtraj.load("trajectory_amber.nc", top="topology.pdb")
    print(trajectory, f"last time {trajectory.time[-1]:.2f} ps")


if __name__ == "__main__":
    main()
