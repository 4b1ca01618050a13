"""Per-frame caller cost of writebehind.openmm.Reporter.report against getState + np.copy.

python benchmarks/openmm_reporter_cost.py BOX_NM   (a TIP3P water box, CPU platform)
"""

import sys
import time

import numpy as np
import openmm
from openmm import app, unit

from writebehind.openmm import Reporter

box = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
m = app.Modeller(app.Topology(), [])
m.addSolvent(ff, boxSize=openmm.Vec3(box, box, box) * unit.nanometer)
system = ff.createSystem(
    m.topology,
    nonbondedMethod=app.PME,
    nonbondedCutoff=min(0.9, box / 2 - 0.05) * unit.nanometer,
    constraints=app.HBonds,
)
integ = openmm.LangevinMiddleIntegrator(
    300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds
)
sim = app.Simulation(
    m.topology, system, integ, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"}
)
sim.context.setPositions(m.positions)
n = sim.topology.getNumAtoms()
N = 300
include = dict(positions=True, velocities=True, energy=True)


def get_state():
    return sim.context.getState(
        getPositions=True, getVelocities=True, getEnergy=True, enforcePeriodicBox=False
    )


# baseline: getState + plain np.copy of the arrays stored
t = time.perf_counter()
for _ in range(N):
    s = get_state()
    np.copy(s.getPositions(asNumpy=True)._value)
    np.copy(s.getVelocities(asNumpy=True)._value)
    s.getPeriodicBoxVectors(asNumpy=True)
    s.getPotentialEnergy()
    s.getKineticEnergy()
    s.getTime()
base = (time.perf_counter() - t) / N
state = get_state()
for fmt in ("writebehind", "amber"):
    r = Reporter(f"/tmp/md/bench_{fmt}.nc", 1, velocities=True, format=fmt)
    r.report(sim, state)
    t = time.perf_counter()
    for _ in range(N):
        r.report(sim, get_state())
    total = (time.perf_counter() - t) / N
    t = time.perf_counter()
    for _ in range(N):
        r.report(sim, state)
    alone = (time.perf_counter() - t) / N
    r.close()
    print(
        f"{n} atoms, {fmt:11}: getState+report {total * 1e3:.3f} ms/frame, "
        f"report alone {alone * 1e6:.0f} us; "
        f"getState+np.copy {base * 1e3:.3f} ms ({(total / base - 1) * 100:+.0f}%)"
    )
