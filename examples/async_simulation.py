"""An async simulation that stores every step and takes a durable checkpoint every N steps.

Run it with::

    python examples/async_simulation.py [run.nc] [--steps 500] [--checkpoint-every 100]
                                        [--particles 1000] [--backend asyncio|trio]

The simulation (overdamped Langevin dynamics of particles in a harmonic well, in numpy) is
one task on the event loop. Every step it appends the positions and the energy: each
``await ...append(x)`` copies ``x`` and returns without waiting for the disk. Every
``--checkpoint-every`` steps it hands the step's handle to a checkpoint task, which awaits
``handle.durable()`` (written, synced and fsynced: the step survives an OS crash) and then
records the step as the file's ``checkpoint_step`` while the simulation runs on. A monitor
task reads the latest frame now and then: a read sees every append made before it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import anyio
import numpy as np

import writebehind

STIFFNESS = 1.0  # of the harmonic well
TIMESTEP = 0.01
TEMPERATURE = 1.0


async def simulate(
    path: str | Path, steps: int, checkpoint_every: int, particles: int = 1000
) -> dict[str, Any]:
    """Run the simulation into ``path``; what happened (steps made durable, frames read)."""
    rng = np.random.default_rng(2024)
    positions = rng.normal(size=(particles, 3))
    noise = math.sqrt(2 * TEMPERATURE * TIMESTEP)
    durable_steps: list[int] = []
    monitored: list[int] = []
    simulation_done = anyio.Event()

    async with writebehind.open_async(path, "w") as store:
        await store.traj.add_metadata("integrator", "overdamped langevin")
        await store.traj.add_metadata("timestep", TIMESTEP)

        async def checkpoint(handle: writebehind.AsyncHandle, step: int) -> None:
            await handle.durable()  # this step, and everything before it, is fsynced
            durable_steps.append(step)
            # Checkpoint tasks may finish in any order: record the latest durable step.
            await store.add_metadata("checkpoint_step", max(durable_steps))

        async def monitor() -> None:
            while not simulation_done.is_set():
                await anyio.sleep(0.01)
                if "traj/step" in store:
                    monitored.append(int(await store.traj.step.read(at_index=-1)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor)
            for step in range(1, steps + 1):
                forces = -STIFFNESS * positions
                positions = positions + TIMESTEP * forces + noise * rng.normal(size=positions.shape)
                energy = 0.5 * STIFFNESS * float(np.sum(positions**2))
                handle = await store.traj.positions.append(positions)
                await store.traj.energy.append(energy)
                await store.traj.step.append(step)
                if step % checkpoint_every == 0:
                    tg.start_soon(checkpoint, handle, step)
                # append does not suspend while there is room: yield so the other tasks run.
                await anyio.sleep(0)
            simulation_done.set()
        frames = len(store.traj.positions)
    return {"frames": frames, "durable_steps": sorted(durable_steps), "monitored": monitored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="async_simulation.nc")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)
    summary = anyio.run(
        simulate,
        args.path,
        args.steps,
        args.checkpoint_every,
        args.particles,
        backend=args.backend,
    )
    print(
        f"{summary['frames']} frames in {args.path}; durable checkpoints at steps "
        f"{summary['durable_steps']}; the monitor saw {len(summary['monitored'])} frames "
        f"while the simulation ran"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
