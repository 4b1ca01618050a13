"""The kill-torture, fast variant: acknowledged entries survive SIGKILL at any moment.

A child process appends entries of known content (``torture/workload.py``) and reports each
acknowledgement only after ``flush()`` returned; the parent kills it, and a fresh process
recovers the file and checks every acknowledged entry bit for bit (``torture/check.py``).
``tools/torture.py`` is the full run (every pwrite64 of every flush, more random kills).
"""

from __future__ import annotations

import json

import pytest
from torture import harness
from torture.workload import LATE

# A smaller set of variables keeps each flush to a handful of writes, so that killing the
# child at each of them fits in CI's time; it keeps a numeric array, a record variable and
# the variable created late, in a group of its own.
SMALL = ["traj/positions", "log", *LATE]
FRAMES, FLUSH_EVERY = 20, 5

pytestmark = pytest.mark.slow  # about a minute: `pytest -m slow`, the second step of .ci/run

needs_strace = pytest.mark.skipif(
    not harness.strace_available(),
    reason="strace is not installed (.ci/run apt-installs it): the pwrite64 fault injection "
    "needs it",
)


def _no_failures(trials: list[harness.Trial]) -> None:
    summary = harness.summarize(trials)
    assert summary["lost_entries"] == 0, harness.failures(trials)
    assert summary["torn_entries"] == 0, harness.failures(trials)
    assert summary["unreadable_after_recovery"] == 0, harness.failures(trials)
    assert summary["read_only_opens_that_wrote"] == 0, harness.failures(trials)
    # a child that continues a recovered file must be able to (it once could not append to
    # variable-length rows a kill left past the committed length)
    assert summary["child_errors"] == 0, harness.failures(trials)


def test_random_kills_lose_no_acknowledged_entry(tmp_path):
    trials = harness.random_kills(
        tmp_path, trials=20, seed=20240605, chains=2, max_delay=0.25, variables=SMALL
    )
    summary = harness.summarize(trials)
    print(json.dumps(summary))
    assert summary["acknowledged_entries_checked"] > 0  # the kills did not all come too early
    _no_failures(trials)


def test_random_kills_of_a_writer_with_checksums_lose_no_acknowledged_entry(tmp_path):
    # A kill inside the in-place rewrite of a chunk tears its Fletcher32 checksum; recovery
    # reseals it, or its flushed rows would read as damaged (lost).
    trials = harness.random_kills(
        tmp_path, trials=10, seed=20240607, chains=2, max_delay=0.25, checksums=True
    )
    summary = harness.summarize(trials)
    print(json.dumps(summary))
    assert summary["acknowledged_entries_checked"] > 0
    # child errors included: a kill during recovery once left a file whose next append to
    # dict records failed ("HDF error"); the recovery mark makes the next open finish it
    _no_failures(trials)


@needs_strace
def test_a_kill_at_each_write_of_the_flush_that_creates_a_group_loses_nothing(tmp_path):
    ranges = harness.flush_pwrites(tmp_path, FRAMES, FLUSH_EVERY, SMALL)
    first, last = ranges[2]  # the third flush: after 10 entries, creates checkpoints/state
    trials = harness.pwrite_kills(
        tmp_path,
        range(first, last + 1),
        frames=FRAMES,
        flush_every=FLUSH_EVERY,
        variables=SMALL,
        workers=2,
    )
    print(json.dumps(harness.summarize(trials)))
    assert all(trial.killed for trial in trials)
    assert all(trial.acked["traj/positions"] == 10 for trial in trials)
    _no_failures(trials)


@needs_strace
def test_negative_control_acknowledging_before_the_flush_is_caught(tmp_path):
    # Acknowledging before flush() returned is the bug the torture must be able to see:
    # killed at the first write of the third flush, the child has acknowledged 15 entries
    # of which only 10 reached the file.
    ranges = harness.flush_pwrites(tmp_path, FRAMES, FLUSH_EVERY, SMALL)
    first, _ = ranges[2]
    (trial,) = harness.pwrite_kills(
        tmp_path,
        [first],
        frames=FRAMES,
        flush_every=FLUSH_EVERY,
        variables=SMALL,
        ack_before_flush=True,
    )
    assert trial.lost > 0


def test_negative_control_a_kill_on_an_early_acknowledgement_is_caught(tmp_path):
    # The same without strace: each child is killed as soon as its first acknowledgement
    # arrives, which acknowledging before the flush sends before anything is in the file.
    trials = harness.random_kills(
        tmp_path,
        trials=2,
        seed=7,
        chains=2,
        ack_before_flush=True,
        kill_on_ack=True,
        variables=SMALL,
    )
    assert all(trial.lost > 0 for trial in trials), [trial.check for trial in trials]
