"""The 20-second variant of the soak (issue 7, point 6); the full run is tools/soak.py.

The soak appends at full speed from several threads, with reads and flushes mixed in,
rotates to a new file whenever the current one passes a size (each closed file is checked
entry by entry, then deleted), and samples RSS every second. Here it runs for 20 seconds
with small segments, in a child process so that its RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

SOAK = Path(__file__).resolve().parents[2] / "tools" / "soak.py"
MAX_PENDING = 16 * 2**20


@pytest.fixture(scope="module")
def soak(tmp_path_factory) -> dict:
    directory = tmp_path_factory.mktemp("soak")
    report = directory / "soak.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--seconds=20",
            "--threads=3",
            "--atoms=50",
            f"--max-pending-bytes={MAX_PENDING}",
            f"--segment-bytes={256 * 2**20}",
            "--warmup=3",
            f"--dir={directory}",
            f"--json={report}",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.exists(), result.stderr[-3000:]
    data = json.loads(report.read_text())
    data["returncode"] = result.returncode
    return data


def test_soak_finds_every_appended_entry(soak):
    summary = soak["summary"]
    assert summary["errors"] == [] and summary["lost"] == 0
    assert summary["entries_appended"] > 10_000
    assert summary["entries_verified"] == summary["entries_appended"]


def test_soak_pending_bytes_stay_within_max_pending_bytes_plus_one_chunk(soak):
    one_chunk = 2 * 2**20  # an append may land while a ~1 MiB chunk is being written
    assert max(s["pending_bytes"] for s in soak["samples"]) <= MAX_PENDING + one_chunk


def test_soak_rss_stays_within_max_pending_bytes_plus_a_constant(soak):
    rss = soak["summary"]["rss_mib"]
    assert rss["growth"] <= rss["bound"], rss


def test_soak_sampled_every_second_and_exited_cleanly(soak):
    assert len(soak["samples"]) >= 8
    assert soak["returncode"] == 0


def test_a_closed_store_keeps_no_staging_memory_while_still_referenced(tmp_path):
    # A closed store lives on in reference cycles until the cyclic GC runs; the soak saw
    # RSS grow by 20-40 MiB per closed file until a full collection freed them.
    import gc
    import tracemalloc

    import numpy as np

    import writebehind

    gc.disable()
    tracemalloc.start()
    try:
        store = writebehind.open(tmp_path / "closed.nc", "w")
        for k in range(4):
            node = store[f"v{k}"]
            for i in range(20_000):
                node.append(np.full((100, 3), i, np.float32))
        store.close()
        kept_mib = tracemalloc.get_traced_memory()[0] / 2**20
    finally:
        tracemalloc.stop()
        gc.enable()
    assert store.closed
    assert kept_mib < 4, f"{kept_mib:.1f} MiB still held by a closed store"
