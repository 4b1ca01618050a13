"""examples/ensemble_dask.py runs and stores what it says (so the example cannot rot)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("xarray")

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ensemble_dask.py"


@pytest.fixture(scope="module")
def example() -> Any:
    spec = importlib.util.spec_from_file_location("ensemble_dask", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mean_energy_read_back(ensemble: str, replicas: int) -> np.ndarray[Any, Any]:
    with writebehind.open(ensemble, "r") as store:
        energies = [store[f"replica-{i}/energy"].read() for i in range(replicas)]
    return np.mean(energies, axis=0)


def test_replicas_write_their_groups_and_xarray_averages_them(example: Any, s3_bucket: str):
    # the example's two parts, without Dask: each replica, then the ensemble's mean
    ensemble = f"s3://{s3_bucket}/ensembles/run.zarr"
    assert [example.run_replica(ensemble, i, 120) for i in range(3)] == [120, 120, 120]
    mean = example.ensemble_mean_energy(ensemble, 3)
    np.testing.assert_allclose(mean.values, mean_energy_read_back(ensemble, 3))
    with writebehind.open(ensemble, "r") as store:
        assert store["replica-2/positions"].read().shape == (120, example.ATOMS, 3)
        assert store["replica-2"].read_metadata() == {"replica": 2}


def test_the_example_runs_the_replicas_on_a_dask_cluster(example: Any, s3_bucket: str):
    # the whole script: four replicas as tasks on two worker processes (the dask extra,
    # which CI installs), each into its group on the test server; the mean xarray and Dask
    # compute is numpy's over the energies every replica stored
    pytest.importorskip("distributed", reason="needs the dask extra (dask.distributed)")
    ensemble = f"s3://{s3_bucket}/ensembles/dask.zarr"
    argv = [ensemble, "--replicas", "4", "--steps", "60", "--workers", "2"]
    result = example.main(argv)
    assert result["stored"] == [60, 60, 60, 60]
    expected = mean_energy_read_back(ensemble, 4)
    assert expected.shape == (60,)
    np.testing.assert_allclose(result["mean_energy"], expected)
