"""Four replicas write one hierarchy on S3 at once, each its own group (or one Icechunk
repository, a branch each), while a reader follows them live (the issue's concurrency
test; S3 is moto's server on 127.0.0.1).

Each writer process appends entries to two variables of its group (entry k filled with k,
so a row of the fill value 0 shows) and prints each length a flush acknowledged. Meanwhile
the test reads the hierarchy over and over, with writebehind (``'r'`` on the whole
hierarchy) and with xarray (``open_zarr`` per group): every variable it finds must be the
rows 1, 2, ... n, n only growing. Halfway, each writer waits (its store open) until the
test has checked that the reader finds exactly what was acknowledged and that a second
writer of a group is refused. At the end every entry of every replica is there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind import StoreInUseError

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")
xarray = pytest.importorskip("xarray")

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too

import obstore.store  # noqa: E402
import zarr.storage  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src"
REPLICAS = 4
ENTRIES = 240
FLUSH_EVERY = 20
WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import writebehind

    url, group, entries, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with writebehind.open(url, "w", group=group or None) as store:
        for k in range(1, entries + 1):
            store.positions.append(np.full((16, 3), k, dtype="float32"))
            store.energy.append(float(k))
            if k % every == 0:
                store.flush()
                print(k, flush=True)
                if k == entries // 2:
                    sys.stdin.readline()  # until the test has looked at the paused writers
                time.sleep(0.02)  # a simulation computes between flushes
    print(entries, flush=True)  # close returned: every entry acknowledged
    # Leave without interpreter teardown: once on Python 3.12 (zarr 3.4, obstore) a child
    # died with SIGABRT and an empty stderr (when is not known; not reproduced in 3 reruns);
    # a teardown abort is suspected, not proven: open in stop 13's note.
    import os
    os._exit(0)
    """
)


def start_writer(url: str, group: str) -> subprocess.Popen[str]:
    pythonpath = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, group, str(ENTRIES), str(FLUSH_EVERY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert child.stdout is not None
    os.set_blocking(child.stdout.fileno(), False)
    return child


def acknowledged(child: subprocess.Popen[str], lines: list[int]) -> None:
    """Add the lengths ``child`` printed since the last call to ``lines``."""
    assert child.stdout is not None
    lines.extend(int(line) for line in child.stdout.readlines() if line.strip())


def check_prefix(seen: dict[str, int], where: str, rows: np.ndarray[Any, Any]) -> None:
    """``rows`` (first column) is 1, 2, ... n, and n is no less than before."""
    n = len(rows)
    np.testing.assert_array_equal(rows, np.arange(1, n + 1), err_msg=where)
    assert n >= seen.get(where, 0), f"{where} shrank from {seen[where]} to {n}"
    seen[where] = n


def read_with_writebehind(url: str, seen: dict[str, int]) -> None:
    try:
        store = writebehind.open(url, "r")
    except FileNotFoundError:  # no writer has created the hierarchy yet
        return
    with store:
        for i in range(REPLICAS):
            for name in ("positions", "energy"):
                path = f"replica-{i}/{name}"
                if path in store:
                    rows = np.asarray(store[path].read()).reshape(-1)
                    step = 1 if name == "energy" else 48  # first value of each entry
                    check_prefix(seen, f"writebehind {path}", rows[::step])


def read_with_xarray(url: str, seen: dict[str, int]) -> None:
    objects = zarr.storage.ObjectStore(obstore.store.from_url(url), read_only=True)
    for i in range(REPLICAS):
        try:
            dataset = xarray.open_zarr(objects, group=f"replica-{i}", consolidated=False)
        except FileNotFoundError:  # the group is not created yet
            continue
        for name in ("positions", "energy"):
            if name in dataset:
                values = dataset[name].values
                rows = values if values.ndim == 1 else values[:, 0, 0]
                check_prefix(seen, f"xarray replica-{i}/{name}", rows)


def run_and_follow(
    targets: list[tuple[str, str]],
    read: Callable[[dict[str, int]], None],
    check_paused: Callable[[], None],
) -> None:
    """Start a writer for each (url, group) of ``targets``; ``read`` (which checks what
    it finds) over and over while they run; ``check_paused`` once all of them wait halfway,
    then let them go on; at the end, every entry is there."""
    writers = [start_writer(url, group) for url, group in targets]
    acks: list[list[int]] = [[] for _ in writers]
    seen: dict[str, int] = {}
    paused = False
    try:
        while any(writer.poll() is None for writer in writers):
            for writer, lines in zip(writers, acks, strict=True):
                acknowledged(writer, lines)
            read(seen)
            for writer in writers:  # one ended before the pause: the others would wait
                if not paused and writer.poll() is not None:
                    raise AssertionError(f"a writer ended early: {writer.stderr.read()}")
            if not paused and all(ENTRIES // 2 in lines for lines in acks):
                halfway: dict[str, int] = {}
                read(halfway)
                assert len(halfway) == 4 * REPLICAS and set(halfway.values()) == {ENTRIES // 2}
                check_paused()
                for writer in writers:
                    assert writer.stdin is not None and writer.poll() is None
                    writer.stdin.write("go on\n")
                    writer.stdin.flush()
                paused = True
            time.sleep(0.01)
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
            writer.wait()
    for writer, lines in zip(writers, acks, strict=True):
        assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
        acknowledged(writer, lines)
        assert lines[-1] == ENTRIES
    assert paused, "the writers ended without pausing halfway"
    final: dict[str, int] = {}
    read(final)
    assert len(final) == 4 * REPLICAS and set(final.values()) == {ENTRIES}


def test_four_replicas_write_one_hierarchy_while_a_reader_follows(s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/ens.zarr"

    def read(seen: dict[str, int]) -> None:
        read_with_writebehind(url, seen)
        read_with_xarray(url, seen)

    def second_writers_are_refused() -> None:
        for mode in ("a", "w"):
            with pytest.raises(StoreInUseError, match="another writer"):
                writebehind.open(url, mode, group="replica-0")

    targets = [(url, f"replica-{i}") for i in range(REPLICAS)]
    run_and_follow(targets, read, second_writers_are_refused)


def test_four_replicas_write_one_icechunk_repository_a_branch_each(s3_bucket: str) -> None:
    icechunk = pytest.importorskip("icechunk", reason="needs the icechunk extra")
    from writebehind.drivers.icechunk import make_storage

    url = f"icechunk+s3://{s3_bucket}/ens"

    def read(seen: dict[str, int]) -> None:
        try:
            repo = icechunk.Repository.open(make_storage(url, None))
        except icechunk.IcechunkError:  # no writer has created it yet
            return
        for i in range(REPLICAS):
            branch = f"replica-{i}"
            try:
                store = writebehind.open(f"{url}#{branch}", "r")
            except FileNotFoundError:  # the branch, or its first commit, is not there yet
                continue
            with store:
                for name in ("positions", "energy"):
                    if name in store:
                        rows = np.asarray(store[name].read()).reshape(len(store[name]), -1)
                        check_prefix(seen, f"writebehind {branch}/{name}", rows[:, 0])
            session = repo.readonly_session(branch=branch)
            dataset = xarray.open_zarr(session.store, consolidated=False)
            for name in ("positions", "energy"):
                if name in dataset:
                    values = dataset[name].values.reshape(dataset[name].shape[0], -1)
                    check_prefix(seen, f"xarray {branch}/{name}", values[:, 0])

    targets = [(f"{url}#replica-{i}", "") for i in range(REPLICAS)]
    run_and_follow(targets, read, lambda: None)
