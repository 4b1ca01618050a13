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

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--sizes=24KB",
        "--libraries=writebehind,writebehind-checksums",
        "--appends=20",
        "--toy-steps=20",
        "--name=smoke",
        f"--out={out}",
        "--no-chart",
        "--no-scale",
        "--no-openmm",
        "--no-latency",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    return json.loads((out / "smoke.json").read_text())


def test_suite_reports_the_requested_size_and_libraries(results: dict) -> None:
    assert [(row["size"], row["library"]) for row in results["write"]] == [
        ("24KB", "writebehind"),
        ("24KB", "writebehind-checksums"),
    ]


@pytest.mark.slow  # 15 to 35 s: four libraries, a moto server, a store with 30 ms requests
def test_zarr_rows_compare_with_zarrs_bulk_write_and_xarrays_append(tmp_path: Path) -> None:
    for module in ("zarr", "obstore", "icechunk", "xarray", "moto", "boto3"):
        pytest.importorskip(module)
    libraries = "writebehind-zarr,writebehind-zarr-30ms,writebehind-zarr-s3,writebehind-icechunk-s3"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--sizes=24KB", "--appends=20"]
    command += [f"--libraries={libraries}", "--toy-steps=0", "--name=zarr", f"--out={tmp_path}"]
    command += ["--no-chart", "--no-scale", "--no-openmm", "--no-latency"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    rows = {
        row["library"]: row for row in json.loads((tmp_path / "zarr.json").read_text())["write"]
    }
    assert list(rows) == libraries.split(",")
    for name, row in rows.items():
        for key in (
            "p50_us",
            "p99_us",
            "drain_s",
            "zarr_bulk_whole_s",
            "throughput_over_zarr_bulk",
        ):
            assert row[key] > 0, (name, key)
    assert rows["writebehind-zarr"]["xarray_append_per_frame_s"] > 0
    assert rows["writebehind-zarr-s3"]["xarray_per_frame_over_ours"] > 0
    assert rows["writebehind-icechunk-s3"]["xarray_append_per_frame_s"] is None


def test_scale_job_reports_flushes_creation_reopening_and_a_long_run(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    command = [sys.executable, "-m", "benchmarks.scale", "--sizes=0.005", "--create=20"]
    command += ["--reopen=20"]
    command += ["--long-gb=0.005", "--repeats=1", f"--out={out}"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    result = json.loads(out.read_text())
    assert result["sizes"][0]["new_variable_flush_ms"] > 0
    created = result["create"][0]
    assert created["variables"] == 20 and isinstance(created["within_bound"], bool)
    assert [len(row["tenths"]) for row in result["long_run"]] == [10, 10]
    assert [row["layout"] for row in result["reopen"]] == ["groups of 10", "flat"]
    for row in result["reopen"]:
        assert row["reopen_r_read_close_s"] > 0 and row["reopen_a_read_close_cpu_s"] > 0
        assert row["netcdf4_open_close_s"] > 0
        assert row["netcdf_c_open_close_cpu_us_per_variable"] > 0
        assert row["netcdf_c_open_attrs_close_cpu_s"] > 0


def test_reopen_layouts_times_the_libraries_open_of_every_layout(tmp_path: Path) -> None:
    out = tmp_path / "layouts.json"
    command = [sys.executable, "-m", "benchmarks.reopen_layouts", "--variables=20"]
    command += ["--per-group=10", "--repeats=1", f"--out={out}"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    rows = json.loads(out.read_text())["rows"]
    assert [row["layout"] for row in rows] == [
        "own_entry_own_axis",
        "own_entry_own_axis_1attr",
        "own_entry_shared_axis",
        "own_entry_shared_axis_1attr",
        "shared_entry_shared_axis",
        "shared_entry_shared_axis_1attr",
    ]
    for row in rows:
        assert row["netcdf_c_open_close_cpu_s"] > 0 and row["netcdf4_open_close_cpu_s"] > 0


def test_reopen_layouts_makes_the_dimensions_each_layout_names(tmp_path: Path) -> None:
    from benchmarks.reopen_layouts import make

    shared, own = tmp_path / "shared.nc", tmp_path / "own.nc"
    make(shared, "shared_entry_shared_axis_1attr", 4, 2)
    make(own, "own_entry_own_axis", 4, 2)
    with netCDF4.Dataset(shared) as dataset:
        group = dataset.groups["g1"]
        assert sorted(group.dimensions) == ["axis_8", "entry"]
        assert group.variables["v3"].ncattrs() == ["writebehind_length"]
    with netCDF4.Dataset(own) as dataset:
        variable = dataset.groups["g0"].variables["v1"]
        assert variable.dimensions == ("v1_entry", "v1_axis1")
        assert variable.shape == (2, 8) and len(variable.ncattrs()) == 5


def test_writebehind_row_has_latencies_job_read_and_rss(results: dict) -> None:
    row = results["write"][0]
    assert row["appends"] == 20
    for key in ("p50_us", "p99_us", "whole_s", "read_s", "peak_rss_mib"):
        assert row[key] > 0, key
    assert row["whole_over_bulk"] > 0 and row["read_over_netcdf4"] > 0


def test_writebehind_rows_have_the_writer_throughput(results: dict) -> None:
    for row in results["write"]:
        assert row["writer_mb_s"] > 0 and row["drain_mb_s"] > 0 and row["read_mb_s"] > 0


def test_suite_compares_checksums_on_and_off_when_both_ran(results: dict) -> None:
    figures = results["checksums"]["sizes"]["24KB"]
    for key in ("p50_us", "p99_us", "whole_s", "writer_mb_s", "read_mb_s"):
        assert figures[key]["with"] > 0 and figures[key]["without"] > 0, key
        assert figures[key]["cost"] is not None, key
    assert "with" in results["checksums"]["toy_overhead"]


def test_toy_loop_is_measured_against_the_loop_storing_nothing(results: dict) -> None:
    toys = {toy["library"]: toy for toy in results["toy"]}
    assert set(toys) == {"writebehind", "writebehind-checksums"}
    assert all(toy["loop_alone_s"] > 0 for toy in toys.values())


def test_targets_are_checked(results: dict) -> None:
    names = {check["target"] for check in results["targets"]}
    assert {"24KB append p50", "24KB whole job / bulk write", "toy loop overhead"} <= names


def test_chart_is_drawn(results: dict, tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="matplotlib is not installed (pip install -e '.[bench]')"
    )
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


@pytest.fixture(scope="module")
def checksums_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("checksums") / "checksums.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.checksums",
        "--quick",
        "--sizes=scalar,24KB",
        "--appends=20",
        f"--out={out}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.read_text())


def test_checksums_runs_each_setting_in_every_repeat(checksums_results: dict) -> None:
    assert checksums_results["repeats"] == 2
    for size in ("scalar", "24KB"):
        runs = checksums_results["runs"][size]
        assert len(runs["writebehind"]) == len(runs["writebehind-checksums"]) == 2


def test_checksums_reports_both_settings_and_the_cost(checksums_results: dict) -> None:
    figures = checksums_results["sizes"]["24KB"]
    for key in ("p50_us", "p99_us", "whole_s", "writer_mb_s", "drain_mb_s", "read_mb_s"):
        assert figures[key]["with"] > 0 and figures[key]["without"] > 0, key
        assert figures[key]["cost"] is not None, key
    assert isinstance(checksums_results["caller_over_limit"], list)


def test_checksums_measures_this_tree_not_an_installed_copy(checksums_results: dict) -> None:
    (source,) = checksums_results["machine"]["writebehind_files"]
    assert Path(source).is_relative_to(ROOT / "src")


@pytest.fixture
def benchmarks_module() -> Any:
    sys.path.insert(0, str(ROOT))
    try:
        import benchmarks.checksums
        import benchmarks.workloads
    finally:
        sys.path.remove(str(ROOT))
    return benchmarks


def test_the_checksums_job_writes_a_variable_with_the_filter(
    benchmarks_module: Any, tmp_path: Path
) -> None:
    workloads = benchmarks_module.workloads
    frame = np.zeros((4, 3))
    for library, fletcher32 in (("writebehind", False), ("writebehind-checksums", True)):
        path = str(tmp_path / f"{library}.nc")
        result = workloads.WRITERS[library](path, frame, 5)
        assert result.bytes_written == 5 * frame.nbytes and result.writer_seconds > 0
        with netCDF4.Dataset(path) as dataset:
            assert dataset["traj/x"].filters()["fletcher32"] is fletcher32


def test_checksums_cost_is_the_extra_time_a_rate_counts_inverted(benchmarks_module: Any):
    compare = benchmarks_module.checksums.compare
    with_runs = [{"p50_us": 2.0, "writer_mb_s": 50.0}, {"p50_us": 3.0, "writer_mb_s": 100.0}]
    without_runs = [{"p50_us": 1.0, "writer_mb_s": 100.0}, {"p50_us": 3.0, "writer_mb_s": 100.0}]
    figures = compare(with_runs, without_runs)
    assert figures["p50_us"]["cost"] == 0.5  # pairs: +100% and 0%
    assert (figures["p50_us"]["pairs_slower"], figures["p50_us"]["pairs"]) == (1, 2)
    assert figures["writer_mb_s"]["cost"] == 0.5  # half the rate: twice the time
    assert figures["caller_over_limit"] == ["p50_us"]


def test_the_openmm_job_times_each_reporter_against_the_baseline(tmp_path: Path) -> None:
    pytest.importorskip("openmm", reason="OpenMM is not installed")
    pytest.importorskip("openmmtools", reason="openmmtools is not installed")
    out = tmp_path / "openmm.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.openmm",
        "--systems=AlanineDipeptideImplicit",
        "--intervals=1",
        "--frames=2",
        "--min-frames=1",
        "--reporters=writebehind,writebehind-amber",
        f"--out={out}",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    rows = json.loads(out.read_text())["rows"]
    by_reporter = {row["reporter"]: row for row in rows}
    assert set(by_reporter) == {"writebehind", "writebehind-amber"}
    assert by_reporter["writebehind"]["baseline"] == "baseline"  # it stores energies
    assert by_reporter["writebehind-amber"]["baseline"] == "baseline-no-energies"
    assert all(row["frames"] == 2 and row["caller_ms"] > 0 for row in rows)
    assert all(row["baseline_ms"] > 0 and row["over_baseline"] > 0 for row in rows)


@pytest.fixture(scope="module")
def latency_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("latency") / "latency.json"
    groups = "append-2.4MB,ops,loop-gap,scalar-job,async-ops"
    command = [sys.executable, "-m", "benchmarks.latency", "--smoke", f"--groups={groups}"]
    command.append(f"--out={out}")
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    return json.loads(out.read_text())


def test_latency_job_reports_every_operation_on_both_faces(latency_results: dict) -> None:
    ops = {(row["op"], row["face"]) for row in latency_results["rows"]}
    for op in (
        "first append of a new variable",
        "write (new 24 KB variable)",
        "add_metadata",
        "read, nothing pending (20 scalars)",
        "flush, nothing pending",
        "flush after creating 20 variables",
        "close, nothing pending",
    ):
        assert {(op, "sync"), (op, "async")} <= ops, op
    assert {("append 2.4MB", "sync"), ("event-loop gap, sync store in the loop", "sync")} <= ops


def test_latency_rows_have_percentiles_and_targets_a_yes_or_no(latency_results: dict) -> None:
    rows = {(row["op"], row["face"]): row for row in latency_results["rows"]}
    for row in rows.values():
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"], row["op"]
    checked = {op for (op, _), row in rows.items() if "target" in row}
    assert {"append 2.4MB", "append 2.4MB (p99)", "scalar job / minimal store"} <= checked
    assert all(isinstance(row["target"]["met"], bool) for row in rows.values() if "target" in row)


def test_latency_appends_are_set_beside_a_plain_copy_of_this_trees_source(
    latency_results: dict,
) -> None:
    row = next(r for r in latency_results["rows"] if r["op"] == "append 2.4MB")
    assert row["peer"] == "np.array(x, copy=True)" and row["peer_p50_us"] > 0
    assert Path(row["runs"][0]["writebehind_file"]).is_relative_to(ROOT / "src")


def test_latency_first_append_is_set_beside_a_spin_of_its_median(latency_results: dict) -> None:
    rows = [r for r in latency_results["rows"] if r["op"] == "first append of a new variable"]
    assert {r["face"] for r in rows} == {"sync", "async"}
    for row in rows:
        assert row["peer"].startswith("spin of its p50")
        assert row["peer_p50_us"] >= 0.9 * row["p50_us"]  # a spin lasts at least as asked


@pytest.fixture
def latency_report() -> Any:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import latency_report
    finally:
        sys.path.remove(str(ROOT))
    return latency_report


def test_latency_targets_over_a_peer_count_beyond_the_peers_median(latency_report: Any) -> None:
    def run(p99_ms: float, peer_p50_ms: float) -> dict:
        stats = {"n": 20, "p50_us": 1.0, "p99_us": p99_ms * 1e3, "max_us": p99_ms * 1e3}
        peer = {"n": 20, "p50_us": peer_p50_ms * 1e3, "p99_us": 1e9, "max_us": 1e9}
        return {
            "op": "flush after creating 20 variables",
            "face": "sync",
            **stats,
            "peer": "x",
            "peer_stats": peer,
        }

    (row,) = latency_report.summarize([[run(14.0, 5.0)], [run(16.0, 5.0)], [run(12.0, 5.0)]])
    assert row["target"]["value"] == pytest.approx(9_000.0)  # median p99 14 ms - 5 ms
    assert row["target"]["met"] is True
    (row,) = latency_report.summarize([[run(16.0, 5.0)]])
    assert row["target"]["met"] is False
