"""The benchmark suite runs end to end (tiny sizes; nothing here is timed or compared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--sizes=24KB",
        "--libraries=writebehind",
        "--appends=20",
        "--toy-steps=20",
        "--name=smoke",
        f"--out={out}",
        "--no-chart",
        "--no-scale",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    return json.loads((out / "smoke.json").read_text())


def test_scale_job_reports_flushes_creation_and_a_long_run(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    command = [sys.executable, "-m", "benchmarks.scale", "--sizes=0.005", "--create=20"]
    command += ["--long-gb=0.005", "--repeats=1", f"--out={out}"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    result = json.loads(out.read_text())
    assert result["sizes"][0]["new_variable_flush_ms"] > 0
    assert result["create"][0]["variables"] == 20 and result["create"][0]["within_bound"]
    assert [len(row["tenths"]) for row in result["long_run"]] == [10, 10]


def test_suite_reports_the_requested_size_and_library(results: dict) -> None:
    assert [(row["size"], row["library"]) for row in results["write"]] == [("24KB", "writebehind")]


def test_writebehind_row_has_latencies_job_read_and_rss(results: dict) -> None:
    row = results["write"][0]
    assert row["appends"] == 20
    for key in ("p50_us", "p99_us", "whole_s", "read_s", "peak_rss_mib"):
        assert row[key] > 0, key
    assert row["whole_over_bulk"] > 0 and row["read_over_netcdf4"] > 0


def test_toy_loop_is_measured_against_the_loop_storing_nothing(results: dict) -> None:
    (toy,) = results["toy"]
    assert toy["library"] == "writebehind" and toy["loop_alone_s"] > 0


def test_targets_are_checked(results: dict) -> None:
    names = {check["target"] for check in results["targets"]}
    assert {"24KB append p50", "24KB whole job / bulk write", "toy loop overhead"} <= names


def test_chart_is_drawn(results: dict, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.chart import draw
    finally:
        sys.path.remove(str(ROOT))
    png = draw(results, tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_hugepages_reports_both_settings() -> None:
    command = [sys.executable, "-m", "benchmarks.read_hugepages", "--reads=2", "--rounds=1"]
    done = subprocess.run(
        command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["huge pages  on", "huge pages off"]
    assert all("over 40 ms:" in line and line.endswith("of 2") for line in lines)


@pytest.fixture
def floors() -> Any:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import floors
    finally:
        sys.path.remove(str(ROOT))
    return floors


def test_the_minimal_scalar_store_of_the_floors_writes_every_value(floors: Any, tmp_path: Path):
    # The floor is only a floor if the minimal store does the job: all values, in order.
    path = str(tmp_path / "minimal.nc")
    floors.minimal_scalar_job(path, 50)
    with netCDF4.Dataset(path) as dataset:
        np.testing.assert_array_equal(dataset["x"][:], 0.5 + np.arange(1, 51))


def test_the_minimal_large_store_of_the_floors_writes_every_frame(floors: Any, tmp_path: Path):
    path = str(tmp_path / "minimal.bin")
    frame = np.arange(12.0).reshape(4, 3)
    latencies = floors.minimal_large_appends(path, frame, 30)
    stored = np.fromfile(path).reshape(30, 4, 3)
    expected = np.repeat(frame[None], 30, axis=0)
    expected[:, 0, 0] = np.arange(30)  # each frame as it was when appended
    np.testing.assert_array_equal(stored, expected)
    assert latencies.shape == (30,)


def test_floors_summary_takes_ratios_of_medians(floors: Any):
    rounds = [
        {
            "bulk_s": b,
            "minimal_whole_s": 2 * b,
            "writebehind_whole_s": 4 * b,
            "copy_p50_us": 10.0,
            "copy_p99_us": 11.0,
            "minimal_p50_us": 20.0,
            "minimal_p99_us": 50.0,
            "writebehind_p50_us": 30.0,
            "writebehind_p99_us": 90.0,
        }
        for b in (1.0, 2.0, 3.0)
    ]
    ratios = floors.summarize(rounds)["ratios"]
    assert ratios["scalar minimal whole / bulk"] == 2.0
    assert ratios["scalar writebehind whole / bulk"] == 4.0
    assert ratios["2.4MB writebehind p99 / copy p50"] == 9.0
