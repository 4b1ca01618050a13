"""The demo simulation behind ``writebehind demo``: Langevin dynamics of a small argon cluster.

N Lennard-Jones atoms (argon parameters) held together by a weak harmonic trap, integrated
with the BAOAB Langevin scheme in plain numpy. Units are the usual molecular-dynamics ones
(nm, ps, kJ/mol, dalton), in which force / mass is directly nm/ps². Every step stores the
positions, velocities, time and energies through the write-behind store; every
``checkpoint_every`` steps a checkpoint dict (with the random generator's state, enough to
restart bit for bit) goes to ``checkpoints/state``.
"""

from __future__ import annotations

import json
import math
import time as _time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pint

from ._store import StorageInterface

__all__ = ["DemoParameters", "DemoTimings", "run_demo"]

BOLTZMANN = 0.0083144626  # kJ/mol/K


@dataclass(frozen=True)
class DemoParameters:
    """What one demo run simulates (in nm, ps, kJ/mol, dalton, kelvin)."""

    n_atoms: int = 64
    n_steps: int = 4000
    checkpoint_every: int = 500
    timestep: float = 0.004  # ps
    temperature: float = 60.0  # K
    friction: float = 2.0  # 1/ps
    mass: float = 39.948  # dalton (argon)
    sigma: float = 0.3405  # nm
    epsilon: float = 0.996  # kJ/mol
    trap_constant: float = 5.0  # kJ/mol/nm², pulls every atom to the origin
    seed: int = 2024


@dataclass(frozen=True)
class DemoTimings:
    """How long the loop took, and how much of it was spent inside the store's calls."""

    loop_seconds: float
    store_seconds: float
    store_calls: int


def _forces(x: np.ndarray[Any, Any], p: DemoParameters) -> tuple[np.ndarray[Any, Any], float]:
    """Forces (kJ/mol/nm) and potential energy (kJ/mol) at positions ``x`` (nm)."""
    diff = x[:, np.newaxis, :] - x[np.newaxis, :, :]
    r2 = np.einsum("ijk,ijk->ij", diff, diff)
    np.fill_diagonal(r2, np.inf)
    s6 = (p.sigma * p.sigma / r2) ** 3
    pair_energy = 4.0 * p.epsilon * (s6 * s6 - s6)
    # -dU/dr / r, so that the force on i from j is coefficient * (x_i - x_j)
    coefficient = 24.0 * p.epsilon * (2.0 * s6 * s6 - s6) / r2
    forces = np.einsum("ij,ijk->ik", coefficient, diff) - p.trap_constant * x
    energy = 0.5 * float(pair_energy.sum()) + 0.5 * p.trap_constant * float(np.sum(x * x))
    return forces, energy


def _initial_positions(n_atoms: int, sigma: float) -> np.ndarray[Any, Any]:
    """Atoms on a cubic lattice at the pair potential's minimum spacing, centred."""
    side = math.ceil(n_atoms ** (1 / 3))
    grid = np.indices((side, side, side)).reshape(3, -1).T[:n_atoms]
    positions = grid * (2 ** (1 / 6) * sigma)
    return positions - positions.mean(axis=0)


def run_demo(
    store: StorageInterface,
    parameters: DemoParameters,
    progress: Callable[[int], None] | None = None,
) -> DemoTimings:
    """Simulate and store every step in ``store``; ``progress(step)`` is called as it runs.

    Returns how long the loop took and how much of that the store's calls cost the loop.

    Raises
    ------
    ValueError
        ``parameters`` asks for no atoms or no steps.
    """
    p = parameters
    if p.n_atoms < 1 or p.n_steps < 1 or p.checkpoint_every < 1:
        raise ValueError("the demo needs at least one atom, one step and checkpoint_every >= 1")
    u = pint.get_application_registry()
    Q = u.Quantity
    nm, ps, kj_mol, kelvin = u.nanometer, u.picosecond, u.kilojoule / u.mole, u.kelvin
    nm_ps = nm / ps

    store.add_metadata("title", f"Langevin dynamics of {p.n_atoms} argon atoms in a trap")
    store.add_metadata("program", "writebehind demo")
    store.add_metadata("n_atoms", p.n_atoms)
    params = store.parameters
    params.temperature.write(p.temperature * kelvin)
    params.timestep.write(p.timestep * ps)
    params.friction.write(p.friction / ps)
    params.mass.write(p.mass * u.dalton)
    params.sigma.write(p.sigma * nm)
    params.epsilon.write(p.epsilon * kj_mol)
    params.trap_constant.write(p.trap_constant * kj_mol / nm**2)
    params.seed.write(p.seed)
    traj = store.trajectory
    traj.add_metadata("integrator", "BAOAB Langevin")
    traj.add_metadata("frames_every_n_steps", 1)
    energies = store.energies
    checkpoint = store.checkpoints.state
    checkpoint.add_metadata("every_n_steps", p.checkpoint_every)

    rng = np.random.default_rng(p.seed)
    kt = BOLTZMANN * p.temperature
    dt = p.timestep
    decay = math.exp(-p.friction * dt)
    noise = math.sqrt((1.0 - decay * decay) * kt / p.mass)
    x = _initial_positions(p.n_atoms, p.sigma)
    v = rng.normal(0.0, math.sqrt(kt / p.mass), size=x.shape)
    f, potential = _forces(x, p)
    positions, velocities = traj.positions, traj.velocities
    time, step_var = traj.time, traj.step
    e_potential, e_kinetic, e_total = energies.potential, energies.kinetic, energies.total
    temperature = energies.temperature
    dof = 3 * p.n_atoms
    clock = _time.perf_counter
    store_seconds = 0.0
    store_calls = 0
    loop_started = clock()
    for step in range(1, p.n_steps + 1):
        v += (0.5 * dt / p.mass) * f  # B
        x += (0.5 * dt) * v  # A
        v *= decay  # O
        v += noise * rng.standard_normal(x.shape)
        x += (0.5 * dt) * v  # A
        f, potential = _forces(x, p)
        v += (0.5 * dt / p.mass) * f  # B
        kinetic = 0.5 * p.mass * float(np.sum(v * v))
        # Quantity(x, unit) wraps x without copying it (x * unit copies and is several
        # times slower); wrapping is safe because append copies the value before returning.
        x_q, v_q = Q(x, nm), Q(v, nm_ps)
        energies_q = (Q(potential, kj_mol), Q(kinetic, kj_mol), Q(potential + kinetic, kj_mol))
        temperature_q = Q(2.0 * kinetic / (dof * BOLTZMANN), kelvin)
        time_q = Q(step * dt, ps)
        # The store calls: each checks its value, copies it into a staging buffer, returns.
        calls_started = clock()
        positions.append(x_q)
        velocities.append(v_q)
        time.append(time_q)
        step_var.append(step)
        e_potential.append(energies_q[0])
        e_kinetic.append(energies_q[1])
        e_total.append(energies_q[2])
        temperature.append(temperature_q)
        store_calls += 8
        if step % p.checkpoint_every == 0:
            store_calls += 1
            checkpoint.append(
                {
                    "step": step,
                    "time": time_q,
                    "positions": x_q,
                    "velocities": v_q,
                    "random_state": json.dumps(rng.bit_generator.state),
                    "parameters": asdict(p),
                }
            )
        store_seconds += clock() - calls_started
        if progress is not None:
            progress(step)
    return DemoTimings(clock() - loop_started, store_seconds, store_calls)
