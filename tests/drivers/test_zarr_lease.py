"""One writer per Zarr store: the lease (drivers/_zarr_lease.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")

import writebehind
from writebehind import StoreInUseError
from writebehind.drivers.zarr import ZarrBackend

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "run.zarr")
    return f"s3://{request.getfixturevalue('s3_bucket')}/runs/run.zarr"


@pytest.fixture
def writer(target: str) -> Iterator[ZarrBackend]:
    backend = ZarrBackend(target, "w")
    backend.open()
    yield backend
    backend.close()


def lease_file(path: Path) -> Path:
    return path.parent / (path.name + ".lease")


def test_a_second_writer_is_refused_at_open(writer: ZarrBackend, target: str) -> None:
    for mode in ("w", "a", None):
        with pytest.raises(StoreInUseError, match="another writer"):
            ZarrBackend(target, mode).open()


def test_refusing_a_second_writer_in_w_deletes_nothing(writer: ZarrBackend, target: str) -> None:
    writer.set_attrs("", {"title": "kept"})
    with pytest.raises(StoreInUseError):
        ZarrBackend(target, "w").open()
    assert writer.root_attrs()["title"] == "kept"


def test_a_reader_opens_a_store_being_written(writer: ZarrBackend, target: str) -> None:
    reader = ZarrBackend(target, "r")
    reader.open()
    assert list(reader.scan()) == []
    reader.close()


def test_closing_gives_the_lease_back(writer: ZarrBackend, target: str) -> None:
    writer.close()
    again = ZarrBackend(target, "a")
    again.open()
    again.close()


def test_a_store_opened_without_a_mode_takes_the_lease_at_its_first_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.zarr"
    first = ZarrBackend(str(path), None)
    first.open()
    assert not lease_file(path).exists()
    first.create_group("g")
    assert lease_file(path).exists()
    with pytest.raises(StoreInUseError):
        ZarrBackend(str(path), "a").open()
    first.close()
    assert not lease_file(path).exists()


def test_the_lease_of_a_process_that_is_gone_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    with writebehind.open(path, "w") as store:
        store.x.append(1.0)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    record = {
        "owner": "dead",
        "host": socket.gethostname(),
        "pid": int(gone.stdout),
        "renewed": time.time(),
        "seconds": 60,
    }
    lease_file(path).write_text(json.dumps(record))
    with writebehind.open(path, "a") as store:
        store.x.append(2.0)
        assert list(store.x.read()) == [1.0, 2.0]


def test_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    with writebehind.open(path, "w") as store:
        store.x.append(1.0)
    record = {
        "owner": "elsewhere",
        "host": "another-host",
        "pid": 1,
        "renewed": time.time() - 120,
        "seconds": 60,
    }
    lease_file(path).write_text(json.dumps(record))
    with writebehind.open(path, "a") as store:
        store.x.append(2.0)


def test_a_lease_renewed_elsewhere_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    with writebehind.open(path, "w") as store:
        store.x.append(1.0)
    record = {
        "owner": "elsewhere",
        "host": "another-host",
        "pid": 1,
        "renewed": time.time(),
        "seconds": 60,
    }
    lease_file(path).write_text(json.dumps(record))
    with pytest.raises(StoreInUseError, match="another-host"):
        writebehind.open(path, "a")


def test_an_idle_writer_keeps_its_lease(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    writer = ZarrBackend(str(path), "w", lease_seconds=0.3)
    writer.open()
    time.sleep(0.8)  # more than the lease's duration: only renewals keep it
    with pytest.raises(StoreInUseError):
        ZarrBackend(str(path), "a").open()
    writer.close()


def test_a_writer_whose_lease_was_taken_over_commits_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    writer = ZarrBackend(str(path), "w", lease_seconds=0.3)
    writer.open()
    from writebehind.codecs.base import Layout

    writer.create_variable("x", Layout("numeric", np.dtype("f8"), ()), appendable=True)
    record = {
        "owner": "thief",
        "host": "another-host",
        "pid": 1,
        "renewed": time.time(),
        "seconds": 60,
    }
    lease_file(path).write_text(json.dumps(record))
    time.sleep(0.5)  # the next renewal finds it
    with pytest.raises(StoreInUseError, match="another-host"):
        writer.write_entries("x", 0, np.ones(1))
    with pytest.raises(StoreInUseError):
        writer.commit_lengths({"x": 1}, durable=False)
    writer.close()
    assert json.loads(lease_file(path).read_text())["owner"] == "thief"  # left to its owner
