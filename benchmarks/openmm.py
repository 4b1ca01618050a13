"""Per-frame caller cost of OpenMM reporters: ``python -m benchmarks.openmm`` (issue 14).

What the simulation's thread spends per report, for each reporter on openmmtools' test
systems (AlanineDipeptideImplicit, AlanineDipeptideExplicit, DHFRExplicit: 22, 2,269 and
23,558 atoms; CPU platform, one thread), reporting every 1, 10 and 100 steps:

- **caller ms**: ``context.getState`` with what the reporter asks for (as
  ``Simulation._generate_reports`` calls it) plus ``reporter.report(simulation, state)``,
  timed around the two calls (``perf_counter_ns``). Not the step loop minus a loop without
  reporters: on a shared 2-CPU machine, a step of DHFR varies by more than a report costs,
  so a difference of two loops measures the machine. A write-behind writer's own work (on
  its thread) is not the caller's; it shows as **close s** (what is left to write at the
  end) and in the loop's own pace, not here.
- **baseline**: ``getState`` of positions, velocities and energies, then ``np.copy`` of the
  positions and velocities, the box and the two energies (the issue's "getState plus a plain
  np.copy of the same arrays").

Each reporter runs in a process of its own (netCDF-C and HDF5 are not thread-safe: see
``run_worker``), with its baseline (``getState`` without energies for a reporter that asks
for none), the two reporting at every frame in alternating order, so that a busy moment of
the machine hits both alike; **/ baseline** is the median over frames of each frame's caller
time over the baseline's in the same frame. The first frame (which creates the files) is not
timed. Rows whose stepping would take longer than ``--budget`` seconds are skipped and
listed (DHFR takes about a second a step here: 100 steps between frames is minutes a row);
the work of a report does not depend on the interval, only the writer's idle time between
reports does.

Reporters: writebehind's ``Reporter`` (``format="writebehind"``: positions, velocities, box,
energies; ``format="amber"``: the same but energies, which AMBER files do not hold),
``openmm.app.DCDReporter`` (positions and box: DCD holds no velocities), mdtraj's
``NetCDFReporter`` (positions, box, time) and ``HDF5Reporter`` (positions, velocities, box,
energies; needs PyTables), and openmmtools.storage appending the same arrays as
writebehind's reporter.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SYSTEMS = ["AlanineDipeptideImplicit", "AlanineDipeptideExplicit", "DHFRExplicit"]
INTERVALS = [1, 10, 100]
REPORTERS = [
    "writebehind",
    "writebehind-amber",
    "DCDReporter",
    "mdtraj-NetCDF",
    "mdtraj-HDF5",
    "openmmtools.storage",
]
#: Not reporters to compare: what a report of the AMBER format cannot do without (the floor).
FLOORS = ["amber-floor"]
STORES = {
    "baseline": "positions, velocities, box, energies (np.copy)",
    "baseline-no-energies": "positions, velocities, box (np.copy)",
    "writebehind": "positions, velocities, box, energies",
    "writebehind-amber": "positions, velocities, box",
    "DCDReporter": "positions, box",
    "mdtraj-NetCDF": "positions, box, time",
    "mdtraj-HDF5": "positions, velocities, box, energies",
    "openmmtools.storage": "positions, velocities, box, energies",
    "amber-floor": "positions, velocities, box (float32 angstrom, into reused arrays)",
}
TARGET = 1.20  # the issue: within 20% of getState + np.copy


# -- the reporters ------------------------------------------------------------------------
class CopyBaseline:
    """getState and a plain copy of what writebehind's reporter stores (with its energies,
    or without, as the AMBER format stores it)."""

    def __init__(self, interval: int, energies: bool = True):
        self.interval = interval
        self.energies = energies
        self.include = ["positions", "velocities"] + (["energy"] if energies else [])

    def describeNextReport(self, simulation: Any) -> dict[str, Any]:
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": self.include}

    def report(self, simulation: Any, state: Any) -> None:
        np.copy(state.getPositions(asNumpy=True)._value)
        np.copy(state.getVelocities(asNumpy=True)._value)
        np.copy(state.getPeriodicBoxVectors(asNumpy=True)._value)
        if self.energies:
            state.getPotentialEnergy()
            state.getKineticEnergy()
        state.getTime()

    def close(self) -> None:
        pass


class AmberFloor:
    """What an AMBER-format report cannot do without, and nothing else: OpenMM's positions
    and velocities read into reused float64 arrays (``State._getVectorAsNumpy``, as
    writebehind's reporter reads them), converted to float32 angstrom into reused arrays
    (the format's unit and dtype), and the time and box vectors taken from the state. No
    store: the difference to writebehind's AMBER report is the engine's part (locking,
    staging slots, waking the writer)."""

    def __init__(self, interval: int):
        self.interval = interval
        self.arrays: dict[int, Any] = {}
        self.time_and_box: Any = None

    def describeNextReport(self, simulation: Any) -> dict[str, Any]:
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": ["positions", "velocities"]}

    def _converted(self, state: Any, kind: int) -> Any:
        pair = self.arrays.get(kind)
        if pair is None:
            atoms = state._getNumParticles()
            pair = self.arrays[kind] = (np.empty((atoms, 3)), np.empty((atoms, 3), np.float32))
        state._getVectorAsNumpy(kind, pair[0])
        return np.multiply(pair[0], 10.0, out=pair[1], casting="same_kind")

    def report(self, simulation: Any, state: Any) -> None:
        import openmm

        self._converted(state, openmm.State.Positions)
        self._converted(state, openmm.State.Velocities)
        self.time_and_box = (state.getTime()._value, state.getPeriodicBoxVectors()._value)

    def close(self) -> None:
        pass


class OpenmmtoolsReporter:
    """openmmtools.storage appending what writebehind's reporter stores (as its users would)."""

    def __init__(self, path: str, interval: int):
        from openmmtools import storage

        self.interval = interval
        self.store = storage.StorageInterface(storage.NetCDFIODriver(path, "w"))

    def describeNextReport(self, simulation: Any) -> dict[str, Any]:
        steps = self.interval - simulation.currentStep % self.interval
        return {"steps": steps, "periodic": None, "include": ["positions", "velocities", "energy"]}

    def report(self, simulation: Any, state: Any) -> None:
        store = self.store
        store.step.append(int(simulation.currentStep))
        store.time.append(state.getTime())
        store.positions.append(state.getPositions(asNumpy=True))
        store.velocities.append(state.getVelocities(asNumpy=True))
        store.potential_energy.append(state.getPotentialEnergy())
        store.kinetic_energy.append(state.getKineticEnergy())
        store.box_vectors.append(state.getPeriodicBoxVectors(asNumpy=True))

    def close(self) -> None:
        self.store.storage_driver.close()


def available(name: str) -> str | None:
    """Why ``name`` cannot run here (None: it can)."""
    needs = {
        "mdtraj-NetCDF": ["mdtraj"],
        "mdtraj-HDF5": ["mdtraj", "tables"],
        "openmmtools.storage": ["openmmtools"],
    }.get(name, [])
    missing = [module for module in needs if importlib.util.find_spec(module) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def make_reporter(name: str, directory: str, interval: int, atoms: int) -> Any:
    from openmm import app

    path = os.path.join(directory, f"{name}.{'dcd' if name == 'DCDReporter' else 'nc'}")
    if name == "baseline":
        return CopyBaseline(interval)
    if name == "baseline-no-energies":
        return CopyBaseline(interval, energies=False)
    if name == "writebehind":
        from writebehind.openmm import Reporter

        return Reporter(path, interval, velocities=True)
    if name == "writebehind-amber":
        from writebehind.openmm import Reporter

        return Reporter(path, interval, velocities=True, format="amber")
    if name == "DCDReporter":
        return app.DCDReporter(path, interval)
    if name == "mdtraj-NetCDF":
        from mdtraj.reporters import NetCDFReporter

        return NetCDFReporter(path, interval)
    if name == "mdtraj-HDF5":
        import tables
        from mdtraj.reporters import HDF5Reporter

        # PyTables turns on HDF5's error printing, process-wide: writebehind's probe of a
        # file's lock (an expected failure, silent otherwise) would print a diagnostic.
        tables.silence_hdf5_messages()
        return HDF5Reporter(
            path.replace(".nc", ".h5"), interval, velocities=True, temperature=False
        )
    if name == "openmmtools.storage":
        return OpenmmtoolsReporter(path, interval)
    if name == "amber-floor":
        return AmberFloor(interval)
    raise ValueError(f"unknown reporter {name!r}")


def _describe(reporter: Any, simulation: Any) -> dict[str, Any]:
    report = reporter.describeNextReport(simulation)
    if isinstance(report, tuple):  # the protocol before OpenMM 8.1 (mdtraj still uses it)
        names = ("positions", "velocities", "forces", "energy")
        include = [name for name, wanted in zip(names, report[1:5], strict=True) if wanted]
        report = {"steps": report[0], "include": include, "periodic": report[5]}
    return dict(report)


def _include(reporter: Any, simulation: Any) -> list[str]:
    return list(_describe(reporter, simulation)["include"])


def state_for(simulation: Any, reporter: Any) -> Any:
    """The state OpenMM would give ``reporter`` (as ``Simulation._generate_reports`` asks)."""
    report = _describe(reporter, simulation)
    periodic = report.get("periodic")
    wrap = simulation._usesPBC if periodic is None else periodic
    integrator = simulation.context.getIntegrator()
    groups = integrator.getIntegrationForceGroups()
    include = {name: True for name in report["include"]}
    return simulation.context.getState(
        groups=groups, enforcePeriodicBox=wrap, parameters=True, **include
    )


# -- one system and interval ----------------------------------------------------------------
def make_simulation(system_name: str) -> Any:
    import openmm
    from openmm import app, unit
    from openmmtools import testsystems

    test_system = getattr(testsystems, system_name)()
    integrator = openmm.LangevinMiddleIntegrator(
        300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds
    )
    integrator.setRandomNumberSeed(1)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(
        test_system.topology, test_system.system, integrator, platform, {"Threads": "1"}
    )
    simulation.context.setPositions(test_system.positions)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    simulation.step(2)
    return simulation


def step_seconds(simulation: Any, steps: int = 3) -> float:
    started = time.perf_counter()
    simulation.step(steps)
    return (time.perf_counter() - started) / steps


def run_case(
    simulation: Any, system_name: str, interval: int, frames: int, name: str
) -> dict[str, Any]:
    """Time reporter ``name`` and its baseline over ``frames`` frames (after one untimed)."""
    atoms = simulation.topology.getNumAtoms()
    with tempfile.TemporaryDirectory(prefix="writebehind-openmm-bench-") as directory:
        reporter = make_reporter(name, directory, interval, atoms)
        # The baseline whose getState asks for energies if this reporter's does.
        energies = "energy" in _include(reporter, simulation)
        baseline_name = "baseline" if energies else "baseline-no-energies"
        reporters = {name: reporter, baseline_name: CopyBaseline(interval, energies)}
        names = list(reporters)
        caller: dict[str, list[float]] = {name: [] for name in names}
        report_only: dict[str, list[float]] = {name: [] for name in names}
        for frame in range(frames + 1):
            simulation.step(interval)
            for current in names if frame % 2 else names[::-1]:  # alternate the order
                started = time.perf_counter_ns()
                state = state_for(simulation, reporters[current])
                got_state = time.perf_counter_ns()
                reporters[current].report(simulation, state)
                done = time.perf_counter_ns()
                if frame:  # the first report creates the files
                    caller[current].append((done - started) / 1e6)
                    report_only[current].append((done - got_state) / 1e6)
        started = time.perf_counter()
        close = getattr(reporter, "close", None)
        if close is not None:
            close()
        closing = time.perf_counter() - started
    base = caller[baseline_name]
    ratios = [c / b for c, b in zip(caller[name], base, strict=True)]
    return {
        "system": system_name,
        "atoms": atoms,
        "interval": interval,
        "reporter": name,
        "stores": STORES[name],
        "frames": frames,
        "caller_ms": statistics.median(caller[name]),
        "caller_ms_range": [min(caller[name]), max(caller[name])],
        "caller_ms_frames": caller[name],
        "report_ms": statistics.median(report_only[name]),
        "baseline": baseline_name,
        "baseline_ms": statistics.median(base),
        "baseline_ms_frames": base,
        "over_baseline": statistics.median(ratios),
        "close_s": closing,
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One system and one reporter, at each interval (one process: see run_worker)."""
    (system_name,) = args.systems.split(",")
    (name,) = args.reporters.split(",")
    with contextlib.redirect_stdout(sys.stderr):  # pymbar prints a banner on import
        simulation = make_simulation(system_name)
    per_step = step_seconds(simulation)
    rows, skipped = [], []
    for interval in [int(i) for i in args.intervals.split(",")]:
        # A getState with energies costs about a step (a force evaluation): two a frame.
        per_frame = per_step * (interval + 2)
        frames = min(args.frames, math.floor(args.budget / per_frame) - 1)
        if frames < args.min_frames:
            why = (
                f"{args.min_frames + 1} frames would take about "
                f"{(args.min_frames + 1) * per_frame:.0f} s (a step: {per_step:.3f} s)"
            )
            skipped.append({"system": system_name, "interval": interval, "why": why})
            continue
        rows.append(run_case(simulation, system_name, interval, frames, name))
    return {"rows": rows, "skipped_rows": skipped}


def run_worker(system_name: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter.

    One reporter a process: netCDF-C and HDF5 are not thread-safe, and writebehind's writer
    thread (which holds writebehind's lock) would otherwise run them while another
    reporter's netCDF4 calls on the simulation's thread (which do not) run them too: that
    crashed this benchmark ("NetCDF: HDF error", then ``free(): invalid pointer``).
    """
    command = [
        sys.executable,
        "-m",
        "benchmarks.openmm",
        "--worker",
        f"--systems={system_name}",
        f"--reporters={name}",
        f"--intervals={args.intervals}",
        f"--frames={args.frames}",
        f"--min-frames={args.min_frames}",
        f"--budget={args.budget}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"{name} on {system_name} failed (exit {done.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- the job --------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| system (atoms) | every | reporter | stores | frames | caller ms | baseline ms "
        "| report ms | / baseline | close s |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "–" if r["over_baseline"] is None else f"{r['over_baseline']:.2f}"
        if r["baseline"] != "baseline":
            ratio += " †"
        lines.append(
            f"| {r['system']} ({r['atoms']:,}) | {r['interval']} | {r['reporter']} "
            f"| {r['stores']} | {r['frames']} | {r['caller_ms']:.2f} | {r['baseline_ms']:.2f} "
            f"| {r['report_ms']:.3f} | {ratio} | {r['close_s']:.3f} |"
        )
    return "\n".join(lines)


def target_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for r in rows:
        if r["reporter"].startswith("writebehind") and r["over_baseline"] is not None:
            checks.append(
                {
                    "system": r["system"],
                    "interval": r["interval"],
                    "reporter": r["reporter"],
                    "over_baseline": r["over_baseline"],
                    "met": r["over_baseline"] <= TARGET,
                }
            )
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.openmm", description=__doc__)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    parser.add_argument("--intervals", default=",".join(map(str, INTERVALS)))
    parser.add_argument(
        "--reporters",
        default=",".join(REPORTERS),
        help=f"comma-separated; also {', '.join(FLOORS)} (not run by default)",
    )
    parser.add_argument("--frames", type=int, default=20, help="timed frames a row (at most)")
    parser.add_argument("--min-frames", type=int, default=3, help="fewer: the row is skipped")
    parser.add_argument(
        "--budget", type=float, default=25.0, help="seconds of stepping and reporting a row"
    )
    parser.add_argument("--quick", action="store_true", help="the 22-atom system, 5 frames")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # openmmtools and mdtraj warn on import
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if args.quick:
        args.systems, args.frames = "AlanineDipeptideImplicit", 5
    wanted = [n for n in args.reporters.split(",") if n and not n.startswith("baseline")]
    skipped = {name: why for name in wanted if (why := available(name))}
    started = time.time()
    rows: list[dict[str, Any]] = []
    skipped_rows: list[dict[str, Any]] = []
    for system_name in args.systems.split(","):
        for name in [n for n in wanted if n not in skipped]:
            print(f"  {system_name}: {name}", flush=True)
            result = run_worker(system_name, name, args)
            rows += result["rows"]
            if not skipped_rows or skipped_rows[-1]["system"] != system_name:
                skipped_rows += result["skipped_rows"]  # the same for every reporter
    rows.sort(key=lambda r: (args.systems.split(",").index(r["system"]), r["interval"]))
    checks = target_rows(rows)
    report = table(rows)
    print(report)
    for row in skipped_rows:
        print(f"skipped: {row['system']} every {row['interval']} steps: {row['why']}")
    for name, why in skipped.items():
        print(f"skipped reporter {name}: {why}")
    met = [c for c in checks if c["met"]]
    within = f"within {TARGET:.2f}x the baseline"
    print(f"\ntarget (caller time {within}): met in {len(met)} of {len(checks)} rows")
    if args.out:
        import openmm

        args.out.parent.mkdir(parents=True, exist_ok=True)
        results = {
            "command": "python -m benchmarks.openmm " + " ".join(argv or sys.argv[1:]),
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_start_end": os.getloadavg(),
                "openmm": openmm.__version__,
            },
            "seconds": round(time.time() - started, 1),
            "rows": rows,
            "targets": checks,
            "skipped_rows": skipped_rows,
            "skipped_reporters": skipped,
        }
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
