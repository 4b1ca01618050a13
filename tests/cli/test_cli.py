"""The ``writebehind`` command line: demo, inspect, read, and their errors."""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import netCDF4
import numpy as np
import pytest

import writebehind
from writebehind import NetCDFBackend, cli
from writebehind.cli import ProgressBar, format_stats, format_value, main

SMALL_DEMO = ["--steps", "30", "--atoms", "5", "--checkpoint-every", "10"]


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.nc"
    assert main(["demo", str(path), *SMALL_DEMO]) == 0
    return path


@pytest.fixture
def foreign_file(tmp_path: Path) -> Path:
    """A NetCDF-4 file written with netCDF4 by hand, as another program would."""
    path = tmp_path / "foreign.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.institution = "elsewhere"
        obs = ds.createGroup("obs")
        obs.createDimension("time", None)
        obs.createDimension("station", 4)
        temp = obs.createVariable("temp", "f4", ("time", "station"))
        temp.units = "degC"
        temp.long_name = "air temperature"
        temp[0:3] = np.arange(12, dtype="f4").reshape(3, 4)
        height = obs.createVariable("height", "f8", ("station",))
        height.units = "m"
        height[:] = [1.0, 2.0, 3.0, 4.0]
    return path


@pytest.fixture
def classic_file(tmp_path: Path) -> Path:
    path = tmp_path / "classic.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as ds:
        ds.createDimension("x", 3)
        ds.createVariable("level", "i4", ("x",))[:] = [7, 8, 9]
    return path


@pytest.fixture
def enormous(tmp_path: Path) -> Path:
    """Variables that declare terabytes and store next to nothing (HDF5 chunks are sparse)."""
    path = tmp_path / "enormous.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("atom", 10)
        ds.createDimension("huge", 2**40)
        ds.createVariable("fixed", "f8", ("huge",), chunksizes=(1024,))
        ds.createVariable("sparse", "f8", ("time", "atom"))[2**36] = np.ones(10)
    return path


@pytest.fixture
def not_netcdf(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a NetCDF file\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def columns(tree: str, name: str) -> list[str]:
    """The columns after ``name`` on its line of an inspect tree."""
    line = next(line for line in tree.splitlines() if f"── {name} " in line)
    return line.split(f"── {name} ")[1].split()


# -- demo ------------------------------------------------------------------------------
def test_demo_stores_every_step_with_units(demo_file: Path) -> None:
    with writebehind.open(demo_file, "r") as store:
        assert len(store.trajectory.positions) == 30
        assert store.trajectory.positions.read(at_index=-1).shape == (5, 3)
        assert str(store.trajectory.positions.read().units) == "nanometer"
        assert str(store.energies.temperature.read().units) == "kelvin"
        assert store.trajectory.step.read().tolist() == list(range(1, 31))


def test_demo_stores_a_checkpoint_dict_every_k_steps(demo_file: Path) -> None:
    with writebehind.open(demo_file, "r") as store:
        checkpoints = store.checkpoints.state.read()
    assert [c["step"] for c in checkpoints] == [10, 20, 30]
    assert checkpoints[-1]["positions"].magnitude.shape == (5, 3)
    assert json.loads(checkpoints[-1]["random_state"])["bit_generator"] == "PCG64"


def test_demo_stores_metadata(demo_file: Path) -> None:
    with writebehind.open(demo_file, "r") as store:
        assert store.read_metadata()["program"] == "writebehind demo"
        assert store.read_metadata()["n_atoms"] == 5
        assert store.trajectory.read_metadata()["integrator"] == "BAOAB Langevin"


def test_demo_prints_stats_and_tree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "demo", str(tmp_path / "d.nc"), *SMALL_DEMO)
    assert status == 0
    assert "store.stats() after the flush:" in out
    assert "operations applied" in out
    assert "└── trajectory/" in out
    assert "positions" in out and "appendable" in out


def test_demo_refuses_to_overwrite_a_file_it_did_not_write(
    not_netcdf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "demo", str(not_netcdf), *SMALL_DEMO)
    assert status == 1
    assert "--overwrite" in err
    assert not_netcdf.read_text() == "this is not a NetCDF file\n"


def test_demo_overwrites_its_own_earlier_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "again.nc"
    assert run(capsys, "demo", str(path), *SMALL_DEMO)[0] == 0
    assert run(capsys, "demo", str(path), "--steps", "12", "--atoms", "2")[0] == 0
    with writebehind.open(path, "r") as store:
        assert len(store.trajectory.positions) == 12


def test_demo_that_cannot_write_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(self: NetCDFBackend, *args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", self.file_name)

    monkeypatch.setattr(NetCDFBackend, "write_entries", disk_full)
    status, _, err = run(capsys, "demo", str(tmp_path / "full.nc"), *SMALL_DEMO)
    assert status == 1
    # (the writebehind logger, which pytest captures here, also logs the failure on stderr)
    assert err.startswith("writebehind: error: the demo stopped: writing ")
    assert "No space left on device" in err and err.count("\n") == 1


def test_demo_into_a_missing_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no-such-dir" / "demo.nc"
    status, out, err = run(capsys, "demo", str(target), *SMALL_DEMO)
    assert (status, out) == (1, "")
    assert err == (
        f"writebehind: error: cannot create {str(target)!r}: "
        f"no such directory {str(target.parent)!r}\n"
    )


def test_demo_rejects_zero_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", str(tmp_path / "x.nc"), "--steps", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


# -- inspect ---------------------------------------------------------------------------
def test_inspect_shows_kind_entries_shape_dtype_units(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "inspect", str(demo_file))
    assert status == 0
    assert columns(out, "positions") == ["appendable", "30", "(5,", "3)", "float64", "nanometer"]
    assert columns(out, "timestep") == ["fixed", "()", "float64", "picosecond"]


def test_inspect_shows_user_metadata_not_bookkeeping(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "inspect", str(demo_file))[1]
    assert "integrator = 'BAOAB Langevin'" in out
    assert "writebehind_" not in out


def test_inspect_json_lists_every_variable(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "inspect", str(demo_file), "--json")
    assert status == 0
    tree = json.loads(out)
    assert tree["written_by_writebehind"] is True
    groups = {g["path"]: g for g in tree["root"]["children"]}
    positions = next(v for v in groups["trajectory"]["children"] if v["path"].endswith("positions"))
    assert positions == {
        "path": "trajectory/positions",
        "type": "variable",
        "kind": "appendable",
        "entries": 30,
        "entry_shape": [5, 3],
        "dtype": "float64",
        "python_type": "ndarray",
        "units": "nanometer",
        "metadata": {},
    }
    assert tree["root"]["metadata"]["n_atoms"] == 5


def test_inspect_reads_a_file_written_by_another_program(
    foreign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "inspect", str(foreign_file), "--json")
    assert status == 0
    tree = json.loads(out)
    assert tree["written_by_writebehind"] is False
    assert tree["root"]["metadata"] == {"institution": "elsewhere"}
    obs = tree["root"]["children"][0]
    height, temp = obs["children"]
    assert (temp["kind"], temp["entries"], temp["entry_shape"]) == ("appendable", 3, [4])
    assert (temp["dtype"], temp["units"]) == ("float32", "degC")
    assert temp["metadata"] == {"long_name": "air temperature"}
    assert (height["kind"], height["entries"], height["units"]) == ("fixed", None, "m")


def test_inspect_reads_a_netcdf3_classic_file(
    classic_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "inspect", str(classic_file))
    assert status == 0
    assert "level" in out and "int32" in out


def test_inspect_shows_a_file_without_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty-groups.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "nothing yet"
        ds.createGroup("runs")
    status, out, _ = run(capsys, "inspect", str(path))
    assert status == 0
    assert out.splitlines()[1:] == ["/", "│   title = 'nothing yet'", "└── runs/"]


@pytest.fixture
def metadata_only(tmp_path: Path) -> Path:
    """A store that was given metadata and closed before anything was written."""
    path = tmp_path / "metadata-only.nc"
    with writebehind.open(path, "w") as store:
        store.add_metadata("a", 1)
        store.grp.add_metadata("b", 2)
    return path


def test_inspect_shows_metadata_of_a_node_never_written(
    metadata_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "inspect", str(metadata_only))
    assert status == 0
    assert out.splitlines()[1:] == [
        "/",
        "│   a = 1",
        "└── grp (metadata only, nothing written yet)",
        "        b = 2",
    ]


def test_inspect_json_shows_metadata_of_a_node_never_written(
    metadata_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "inspect", str(metadata_only), "--json")
    assert status == 0
    root = json.loads(out)["root"]
    assert root["metadata"] == {"a": 1}
    assert root["children"] == [{"path": "grp", "type": "unbound", "metadata": {"b": 2}}]


def test_inspect_knows_a_metadata_only_file_is_written_by_writebehind(
    metadata_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(capsys, "inspect", str(metadata_only), "--json")[1]
    assert json.loads(out)["written_by_writebehind"] is True


@pytest.mark.parametrize("command", ["inspect", "read"])
def test_missing_file_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = ["x"] if command == "read" else []
    status, out, err = run(capsys, command, str(tmp_path / "missing.nc"), *extra)
    assert status == 1
    assert out == ""
    assert err.startswith("writebehind: error: no such file:") and err.count("\n") == 1
    assert not (tmp_path / "missing.nc").exists()


@pytest.mark.parametrize("command", ["inspect", "read"])
def test_non_netcdf_file_is_one_line_and_status_1(
    not_netcdf: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = ["x"] if command == "read" else []
    status, _, err = run(capsys, command, str(not_netcdf), *extra)
    assert status == 1
    assert "is not a NetCDF file" in err and err.count("\n") == 1


def test_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "inspect", str(tmp_path))
    assert status == 1
    assert "is a directory" in err


def test_unreadable_file_is_not_called_not_netcdf(
    demo_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(file_name: str, verify: bool = False) -> None:  # as without read permission
        raise PermissionError(errno.EACCES, "Permission denied", file_name)

    monkeypatch.setattr(cli, "inspect_file", refused)
    status, _, err = run(capsys, "inspect", str(demo_file))
    assert status == 1
    assert err == f"writebehind: error: cannot open {str(demo_file)!r}: Permission denied\n"


# -- read ------------------------------------------------------------------------------
def test_read_prints_a_whole_variable(demo_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "read", str(demo_file), "trajectory/step")
    assert status == 0
    assert out.startswith("[") and out.rstrip().endswith("]")
    assert [int(n) for n in out.strip("[]\n ").split()] == list(range(1, 31))


def test_read_prints_one_entry_with_units(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "read", str(demo_file), "trajectory/time", "--index", "-1")
    assert status == 0
    assert out.strip() == "0.12 ps"  # 30 steps of 4 fs


def test_read_prints_a_slice(demo_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "read", str(demo_file), "trajectory/step", "--index", "2:5")
    assert status == 0
    assert out.strip() == "[3 4 5]"


@pytest.mark.parametrize(
    ("index", "printed"), [("-3:", "[28 29 30]"), ("-5:-2", "[26 27 28]"), ("-6::2", "[25 27 29]")]
)
def test_read_takes_a_negative_slice_after_a_space(
    demo_file: Path, capsys: pytest.CaptureFixture[str], index: str, printed: str
) -> None:
    status, out, err = run(capsys, "read", str(demo_file), "trajectory/step", "--index", index)
    assert (status, err) == (0, "")
    assert out.strip() == printed


def test_read_takes_a_negative_slice_after_an_abbreviated_option(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "read", str(demo_file), "trajectory/step", "--ind", "-2:")
    assert status == 0
    assert out.strip() == "[29 30]"


def test_read_prints_a_checkpoint_dict_key_by_key(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "read", str(demo_file), "checkpoints/state", "--index", "0")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "step: 10"
    assert lines[1] == "time: 0.04 ps"
    assert any(line.startswith("positions: [[") for line in lines)


def test_read_of_a_missing_path_suggests_close_names(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "read", str(demo_file), "trajectory/postions")
    assert status == 1 and out == ""
    assert "nothing at 'trajectory/postions'" in err
    assert "did you mean 'trajectory/positions'" in err


def test_read_of_a_group_lists_its_children(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "read", str(demo_file), "energies")
    assert status == 1
    assert "'energies' is a group" in err and "temperature" in err


def test_read_of_a_node_never_written_says_it_holds_only_metadata(
    metadata_only: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "read", str(metadata_only), "grp")
    assert (status, out) == (1, "")
    assert err == "writebehind: error: nothing was written to 'grp': it holds only metadata (b)\n"


def test_read_index_beyond_the_entries_is_an_error(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "read", str(demo_file), "trajectory/step", "--index", "30")
    assert status == 1
    assert "maximum length of the appended data of 30" in err


def test_read_index_of_a_fixed_variable_is_an_error(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "read", str(demo_file), "parameters/seed", "--index", "0")
    assert status == 1
    assert "fixed variable" in err


def test_read_of_a_variable_larger_than_memory_says_to_use_index(
    enormous: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "read", str(enormous), "sparse")
    assert (status, out) == (1, "")
    assert err == (
        "writebehind: error: 'sparse' is too large to read at once (68719476737 entries, "
        "5.5 TB): read fewer entries at a time with --index START:STOP\n"
    )


def test_read_of_a_fixed_variable_larger_than_memory_is_one_line(
    enormous: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "read", str(enormous), "fixed")
    assert status == 1
    assert err == (
        "writebehind: error: 'fixed' is too large to read at once (8.8 TB), and a fixed "
        "variable is read whole: read parts of it with netCDF4\n"
    )


def test_read_of_some_entries_of_a_variable_larger_than_memory_works(
    enormous: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "read", str(enormous), "sparse", "--index=-1")
    assert status == 0
    assert out.strip() == "[1. 1. 1. 1. 1. 1. 1. 1. 1. 1.]"


def test_read_rejects_a_malformed_index(
    demo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["read", str(demo_file), "trajectory/step", "--index", "one"])
    assert exit_info.value.code == 2
    assert "not an index" in capsys.readouterr().err


def test_read_works_on_a_foreign_file(
    foreign_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "read", str(foreign_file), "obs/height")
    assert status == 0
    assert out.strip() == "[1. 2. 3. 4.] m"


# -- recover ---------------------------------------------------------------------------
def test_recover_of_a_directory_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "recover", str(tmp_path))
    assert (status, out) == (1, "")
    assert err == f"writebehind: error: cannot recover {str(tmp_path)!r}: Is a directory\n"


# -- the command line itself ---------------------------------------------------------
def test_no_command_lists_the_commands_on_stderr_with_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys)
    assert (status, out) == (2, "")
    assert err.startswith("usage: writebehind ")
    for command in ("demo", "inspect", "read", "recover"):
        assert f"\n    {command} " in err


# -- the process: python -m, console script, no traceback -------------------------------
def test_python_dash_m_runs_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "writebehind", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"writebehind {writebehind.__version__}"


def test_user_error_exits_1_without_traceback_in_a_real_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "writebehind", "read", str(tmp_path / "none.nc"), "a/b"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("writebehind: error: no such file")


def test_unexpected_error_is_one_line_that_says_it_is_a_bug(
    demo_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(file_name: str, verify: bool = False) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "inspect_file", broken)
    status, _, err = run(capsys, "inspect", str(demo_file))
    assert status == 1
    assert err == (
        "writebehind: error: unexpected RuntimeError: boom (a bug in writebehind: please "
        "report it; python -X dev -m writebehind ... shows the traceback)\n"
    )


def test_unexpected_error_shows_its_traceback_in_python_dev_mode(demo_file: Path) -> None:
    code = (
        "import sys, writebehind.cli as cli\n"
        "def broken(file_name, verify=False): raise RuntimeError('boom')\n"
        "cli.inspect_file = broken\n"
        "raise SystemExit(cli.main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code, "inspect", str(demo_file)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr


def test_console_script_is_declared() -> None:
    scripts = entry_points(group="console_scripts")
    assert any(ep.name == "writebehind" and ep.value == "writebehind.cli:main" for ep in scripts)


# -- pieces ----------------------------------------------------------------------------
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal() -> None:
    stream = FakeTerminal()
    bar = ProgressBar(10, stream)
    bar(10)
    bar.close()
    assert stream.getvalue().startswith("\r[" + "#" * 30 + "] 10/10 steps")
    assert stream.getvalue().endswith("\n")


def test_progress_bar_is_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(10, stream)
    for step in range(1, 11):
        bar(step)
    bar.close()
    assert stream.getvalue() == ""


def test_format_stats_names_every_field(store: writebehind.StorageInterface) -> None:
    text = format_stats(store.stats())
    assert len(text.splitlines()) == len(writebehind.EngineStats._fields)
    assert "operations applied" in text and "longest backpressure wait" in text


def test_format_value_shows_a_nested_dict_indented() -> None:
    text = format_value({"a": 1, "b": {"c": np.arange(3)}})
    assert text == "a: 1\nb:\n  c: [0 1 2]"


@pytest.mark.parametrize("command", ["demo", "inspect", "read", "recover", "export"])
def test_every_command_has_a_summary_and_a_description(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    line = next(line for line in listing.splitlines() if line.strip().startswith(command + " "))
    assert len(line.split(None, 1)) == 2  # the command, then its summary
    with pytest.raises(SystemExit):
        main([command, "--help"])
    usage, description = capsys.readouterr().out.split("\n\n")[:2]
    assert usage.startswith(f"usage: writebehind {command}")
    assert not description.startswith(("positional arguments", "options"))
