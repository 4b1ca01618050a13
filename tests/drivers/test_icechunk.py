"""The contract suite on the Icechunk backend (local and S3 on moto), and what is its own:
one commit per flush, readers at one snapshot, a second writer's commit refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind._errors import StoreInUseError
from writebehind.codecs.base import Layout

pytest.importorskip("zarr", reason="the Icechunk backend needs the icechunk extra")
pytest.importorskip("icechunk", reason="the Icechunk backend needs the icechunk extra")

import icechunk

from writebehind._targets import backend_for
from writebehind.drivers.icechunk import IcechunkBackend, make_storage

from .contract import DriverContract, MakeBackend, rows

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too

F8 = Layout("numeric", np.dtype("f8"), (2, 3))
SRC = Path(__file__).resolve().parents[2] / "src"


class TestIcechunkBackendLocal(DriverContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> MakeBackend:
        url = f"icechunk://{tmp_path}/repo"

        def make(mode: str | None) -> IcechunkBackend:
            return IcechunkBackend(url, mode)

        return make


class TestIcechunkBackendS3(DriverContract):
    @pytest.fixture
    def make_backend(self, s3_bucket: str) -> MakeBackend:
        url = f"icechunk+s3://{s3_bucket}/runs/contract"

        def make(mode: str | None) -> IcechunkBackend:
            return IcechunkBackend(url, mode)

        return make


# -- what is the Icechunk backend's own ----------------------------------------------------
@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"icechunk://{tmp_path}/repo"


@pytest.fixture
def backend(url: str) -> Iterator[IcechunkBackend]:
    driver = IcechunkBackend(url, "w")
    driver.open()
    yield driver
    driver.close()


def snapshots(url: str, branch: str = "main") -> int:
    repo = icechunk.Repository.open(make_storage(url, None))
    return len(list(repo.ancestry(branch=branch)))


def test_the_targets_name_the_icechunk_backend(tmp_path: Path) -> None:
    backend = backend_for(f"icechunk://{tmp_path}/repo#replica1", "w")
    assert isinstance(backend, IcechunkBackend)
    assert backend.branch == "replica1"


def test_a_repository_is_created_in_the_format_icechunk_1_opens(
    backend: IcechunkBackend, tmp_path: Path
) -> None:
    # Icechunk 2 (Python 3.12+) would create its format 2, which Icechunk 1 (Python 3.11)
    # does not open: format 1 has a refs/ folder, format 2 a `repo` object instead
    root = tmp_path / "repo"
    assert (root / "refs").is_dir()
    assert not (root / "repo").exists()


def test_a_flush_is_one_commit(backend: IcechunkBackend, url: str) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.create_variable("y", F8, appendable=True)
    backend.commit_lengths({}, durable=False)
    before = snapshots(url)
    backend.write_entries("x", 0, rows(0, 3))
    backend.write_entries("y", 0, rows(0, 4))
    backend.commit_lengths({"x": 3, "y": 4}, durable=False)
    assert snapshots(url) == before + 1


def test_a_reader_sees_every_variable_at_the_last_commit(
    backend: IcechunkBackend, url: str
) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.create_variable("y", F8, appendable=True)
    backend.write_entries("x", 0, rows(0, 3))
    backend.write_entries("y", 0, rows(0, 3))
    backend.commit_lengths({"x": 3, "y": 3}, durable=False)
    backend.write_entries("x", 3, rows(3, 2))
    backend.write_entries("y", 3, rows(3, 2))
    backend.set_attrs("y", {"note": "uncommitted"})
    reader = IcechunkBackend(url, "r")
    reader.open()
    try:
        records = {record.path: record for record in reader.scan()}
        assert (records["x"].length, records["y"].length) == (3, 3)
        assert "note" not in records["y"].attrs
        np.testing.assert_array_equal(reader.read_entries("y", 0, 3), rows(0, 3))
    finally:
        reader.close()


def test_a_second_writers_commit_raises_a_conflict(backend: IcechunkBackend, url: str) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.commit_lengths({}, durable=False)
    other = IcechunkBackend(url, "a")
    other.open()
    list(other.scan())
    backend.write_entries("x", 0, rows(0, 2))
    backend.commit_lengths({"x": 2}, durable=False)
    other.write_entries("x", 0, rows(10, 2))
    with pytest.raises(StoreInUseError, match="another writer") as caught:
        other.commit_lengths({"x": 2}, durable=False)
    assert isinstance(caught.value.__cause__, icechunk.ConflictError)
    other._pending.error = caught.value  # its close commits nothing more


def test_close_commits_what_no_flush_did(url: str) -> None:
    with writebehind.open(url, "w") as store:
        store.add_metadata("title", "run")
    with writebehind.open(url, "r") as store:
        assert store.read_metadata()["title"] == "run"


def test_a_missing_repository_is_not_opened_for_reading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No Icechunk repository"):
        IcechunkBackend(f"icechunk://{tmp_path}/none", "r").open()


def test_w_starts_an_existing_branch_over_and_keeps_its_history(url: str) -> None:
    with writebehind.open(url, "w") as store:
        store.x.append(1.0)
        store.group.y.write(3)
    before = snapshots(url)
    with writebehind.open(url, "w") as store:
        store.z.append(5)
    with writebehind.open(url, "r") as store:
        assert list(store) == ["z"]
    assert snapshots(url) > before


def test_a_conflicting_flush_raises_a_background_write_error(url: str) -> None:
    first = writebehind.open(url, "w")
    first.x.append(1.0)
    first.flush()
    second = writebehind.open(url, "a")
    second.x.append(2.0)
    first.x.append(3.0)
    first.flush()
    with pytest.raises(writebehind.BackgroundWriteError) as caught:
        second.flush()
    assert isinstance(caught.value.__cause__, StoreInUseError)
    with pytest.raises(writebehind.BackgroundWriteError):
        second.close()
    first.close()
    with writebehind.open(url, "r") as store:
        np.testing.assert_array_equal(store.x.read(), [1.0, 3.0])


def test_inspect_reads_an_icechunk_repository(url: str) -> None:
    from writebehind._inspect import inspect_file

    with writebehind.open(url, "w") as store:
        store.traj.x.append(1.0)
    summary = inspect_file(url)
    assert summary.written_by_writebehind
    assert [node.name for node in summary.nodes()] == ["traj", "x"]
    assert summary.size_bytes > 0


def test_the_cli_keeps_icechunks_log_out_of_its_output(
    url: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from writebehind.cli import main

    monkeypatch.delenv("ICECHUNK_LOG", raising=False)
    with writebehind.open(url, "w") as store:
        store.x.append(1.0)
    capfd.readouterr()
    assert main(["read", url, "x"]) == 0
    out = capfd.readouterr().out
    assert "WARN" not in out and "1." in out


def test_storage_options_name_the_s3_endpoint(
    s3_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name)
    options = {"endpoint_url": s3_server, "allow_http": True}
    url = f"icechunk+s3://{s3_bucket}/ens#replica-0"
    with writebehind.open(url, "w", storage_options=options) as store:
        store.x.append(1.0)
    with writebehind.open(url, "r", storage_options=options) as store:
        np.testing.assert_array_equal(store.x.read(), [1.0])


def test_storage_options_are_refused_for_a_local_repository(url: str) -> None:
    with pytest.raises(ValueError, match="object storage"):
        make_storage(url, {"endpoint_url": "http://127.0.0.1:1"})


def test_a_missing_branch_is_not_opened_for_reading(url: str) -> None:
    with writebehind.open(url, "w") as store:
        store.x.append(1.0)
    with pytest.raises(FileNotFoundError, match="No branch 'other'"):
        IcechunkBackend(f"{url}#other", "r").open()


def test_branches_hold_separate_stores(url: str) -> None:
    for branch in ("replica-0", "replica-1"):
        with writebehind.open(f"{url}#{branch}", "w") as store:
            store.x.append(float(branch[-1]))
    for branch in ("replica-0", "replica-1"):
        with writebehind.open(f"{url}#{branch}", "r") as store:
            np.testing.assert_array_equal(store.x.read(), [float(branch[-1])])


def test_entries_beyond_the_committed_chunks_are_written_and_committed(
    backend: IcechunkBackend,
) -> None:
    # Icechunk refuses a chunk outside the array's shape: the session's shape must grow
    # before entries of a new chunk are written
    layout = Layout("numeric", np.dtype("f8"), (4096,))  # 32 kB entries: 32 a chunk
    backend.create_variable("x", layout, appendable=True)
    count = backend.chunk_entries(layout) * 2 + 3
    data = np.arange(count, dtype="f8")[:, None] * np.ones(4096)
    backend.write_entries("x", 0, data[:5])
    backend.commit_lengths({"x": 5}, durable=False)
    backend.write_entries("x", 5, data[5:])
    backend.commit_lengths({"x": count}, durable=False)
    np.testing.assert_array_equal(backend.read_entries("x", 0, count), data)


# -- keep_history: the history shortened at close ----------------------------------------------
def write_flushes(url: str, flushes: int, **options: Any) -> None:
    with writebehind.StorageInterface(IcechunkBackend(url, "w", **options)) as store:
        for i in range(flushes):
            store.x.append(np.full(1000, float(i)))
            store.flush()


def repository_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_keep_history_zero_leaves_the_tip_and_deletes_older_chunks(
    url: str, tmp_path: Path
) -> None:
    write_flushes(url, 12)
    kept = repository_bytes(tmp_path / "repo")
    write_flushes(f"{url}#other", 12, keep_history=0)  # expires every branch's history
    assert snapshots(url) <= 2  # main's tip (and the repository's first snapshot)
    assert repository_bytes(tmp_path / "repo") < kept
    with writebehind.open(url, "r") as store:
        np.testing.assert_array_equal(store.x.read()[:, 0], np.arange(12.0))


def test_without_keep_history_every_flush_stays_in_the_history(url: str) -> None:
    write_flushes(url, 12)
    assert snapshots(url) > 12


def test_keep_history_keeps_the_snapshots_younger_than_it(url: str) -> None:
    write_flushes(url, 12, keep_history=3600)
    assert snapshots(url) > 12


def test_keep_history_must_be_a_duration(url: str) -> None:
    with pytest.raises(ValueError, match="keep_history"):
        IcechunkBackend(url, "w", keep_history=-1)


CREATE_AND_WRITE = """
import sys, writebehind
with writebehind.open(sys.argv[1], "w") as store:
    store.x.append(1.0)
"""


def test_writers_creating_one_repository_at_once_all_write(s3_bucket: str) -> None:
    # Icechunk lets one of them create the repository and fails the others ("branch
    # update conflict", "repositories can only be created in clean prefixes"); before
    # writebehind retried, 2 of 6 such rounds lost a writer
    pythonpath = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath, "ICECHUNK_LOG": "error"}
    for round_ in range(3):
        url = f"icechunk+s3://{s3_bucket}/round-{round_}"
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", CREATE_AND_WRITE, f"{url}#replica-{i}"],
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(4)
        ]
        failures = [w.communicate(timeout=60)[1] for w in writers if w.wait(timeout=60) != 0]
        assert not failures, failures[0][-800:]
        for i in range(4):
            with writebehind.open(f"{url}#replica-{i}", "r") as store:
                assert list(store.x.read()) == [1.0]
