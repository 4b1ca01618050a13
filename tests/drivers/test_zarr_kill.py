"""SIGKILL a writer of a Zarr store at random moments: chunks first, then the shape.

A child appends entries (entry i filled with i + 1, so a fill-value row of zeros shows) to
two variables of a local ``.zarr`` and prints the lengths each flush acknowledged; the test
kills it with SIGKILL at a random moment, then checks what a reader finds: no acknowledged
entry lost, no row inside a shape that was not written, and a new writer continuing the
store (taking over the dead writer's lease at once).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import writebehind

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too

SRC = Path(__file__).resolve().parents[2] / "src"
CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import writebehind

    with writebehind.open(sys.argv[1], None) as store:
        # Each variable continues from its own length: a kill within a flush can leave one
        # variable committed with that flush and the other not (one object per array).
        a = len(store.a.read()) if "a" in store else 0
        b = len(store.b.read()) if "b" in store else 0
        for k in range(1, 100_000):
            store.a.append(np.full(256, a + k, dtype="float64"))  # 2 KiB: 512 a chunk
            store.b.append(np.full(3, b + k, dtype="int32"))
            if k % 97 == 0:
                store.flush()
                print(a + k, b + k, flush=True)
    """
)


def run_and_kill(path: Path | str, seconds: float) -> tuple[int, int]:
    """Run the child until its first flush and ``seconds`` more, then SIGKILL it; the
    last lengths of ``a`` and ``b`` it acknowledged."""
    pythonpath = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        # Icechunk's warning at open would end the wait for the first flush's line
        env={**os.environ, "PYTHONPATH": pythonpath, "ICECHUNK_LOG": "error"},
    )
    assert child.stdout is not None
    lines = [child.stdout.readline()]  # started (imports take a while)
    os.set_blocking(child.stdout.fileno(), False)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
        lines += child.stdout.readlines()
    child.send_signal(signal.SIGKILL)
    child.wait()
    lines += child.stdout.readlines()  # printed before the kill
    # only the child's "a b" lines: Icechunk logs a warning to stdout at open
    acknowledged = [line.split() for line in lines if line.replace(" ", "").strip().isdigit()]
    return (int(acknowledged[-1][0]), int(acknowledged[-1][1])) if acknowledged else (0, 0)


def check_kills(path: Path | str, runs: int, seed: int, *, one_commit: bool = False) -> int:
    """Kill ``runs`` writers of ``path`` one after another, checking the store after each;
    the last length of ``a`` acknowledged. ``one_commit``: a flush commits both variables
    at once (Icechunk), so their lengths are always equal."""
    rng = random.Random(seed)
    acked_a = acked_b = 0
    for _ in range(runs):  # each run continues the store the previous one left
        got_a, got_b = run_and_kill(path, rng.uniform(0.0, 1.0))
        acked_a, acked_b = max(acked_a, got_a), max(acked_b, got_b)
        with writebehind.open(path, "r") as store:
            a, b = store.a.read(), store.b.read()
        assert len(a) >= acked_a and len(b) >= acked_b
        np.testing.assert_array_equal(a[:, 0], np.arange(1, len(a) + 1))
        np.testing.assert_array_equal(b[:, 0], np.arange(1, len(b) + 1))
        if one_commit:
            assert len(a) == len(b)
    return acked_a


def test_killed_writers_lose_no_acknowledged_entry_and_show_no_unwritten_row(
    tmp_path: Path,
) -> None:
    assert check_kills(tmp_path / "killed.zarr", runs=2, seed=13) > 0


@pytest.mark.slow
def test_many_killed_writers_lose_no_acknowledged_entry(tmp_path: Path) -> None:
    assert check_kills(tmp_path / "killed.zarr", runs=20, seed=14) > 0


def test_killed_icechunk_writers_lose_nothing_and_commit_all_variables_at_once(
    tmp_path: Path,
) -> None:
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk://{tmp_path}/killed"
    assert check_kills(url, runs=2, seed=13, one_commit=True) > 0


def test_killed_writers_of_a_group_on_s3_lose_nothing(s3_bucket: str) -> None:
    # the child inherits the AWS_* variables that point at the test server; the group's
    # lease names a process of this host that is gone, so the next writer takes it over
    url = f"s3://{s3_bucket}/ens.zarr/replica-0"
    before = 0
    for seconds in (0.3, 0.1):
        acked, _ = run_and_kill(url, seconds)
        assert acked > before  # this writer opened (the lease taken over) and flushed
        with writebehind.open(url, "r") as store:
            a = store.a.read()
        assert len(a) >= acked
        np.testing.assert_array_equal(a[:, 0], np.arange(1, len(a) + 1))
        before = len(a)
