"""examples/async_simulation.py runs and stores what it says (so the example cannot rot)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import writebehind

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "async_simulation.py"

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("async_simulation", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_stores_every_step_and_makes_every_checkpoint_durable(example, nc_path):
    summary = await example.simulate(nc_path, steps=60, checkpoint_every=20, particles=50)
    assert summary["frames"] == 60
    assert summary["durable_steps"] == [20, 40, 60]
    with writebehind.open(nc_path, "r") as store:
        assert store.traj.positions.read().shape == (60, 50, 3)
        assert store.traj.step.read().tolist() == list(range(1, 61))
        energies = store.traj.energy.read()
        assert energies.shape == (60,) and np.all(energies > 0)
        assert store.read_metadata()["checkpoint_step"] == 60
        assert store.traj.read_metadata()["integrator"] == "overdamped langevin"


def test_example_runs_as_a_script(tmp_path):
    args = ["--steps", "30", "--checkpoint-every", "10", "--particles", "10", "--backend", "trio"]
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "run.nc"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "30 frames" in result.stdout
    assert "[10, 20, 30]" in result.stdout
