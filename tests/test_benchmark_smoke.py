"""The benchmark suite runs end to end (tiny sizes; nothing here is timed or compared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    return json.loads((out / "smoke.json").read_text())


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
