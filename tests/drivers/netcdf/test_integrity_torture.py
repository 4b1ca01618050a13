"""The integrity torture, fast variant: a damaged or replaced file never yields a wrong value.

Copies of a cleanly closed file are cut short, zero-filled, or overwritten with random bytes,
then opened and read in a fresh process (``torture/integrity.py``); a run restarted with
``"w"`` on the inode of a killed one gets that run's stale journal put back beside it before
it is killed in turn (``torture/restart.py``). ``tools/torture.py --parts integrity`` is the
full run (more cuts, offsets and rounds; ``benchmarks/results/torture-integrity.json``).
"""

from __future__ import annotations

import json

import pytest
from torture import integrity, restart

pytestmark = pytest.mark.slow  # `pytest -m slow`, the second step of .ci/run

FRAMES = 300  # two chunks of traj/positions, three of traj/velocities


def _print(summary: dict) -> None:
    print(json.dumps({k: v for k, v in summary.items() if k not in ("trials", "per_round")}))


def _never_wrong(summary: dict) -> None:
    assert summary["wrong_values"] == 0, summary["failures"]
    assert summary["read_only_opens_that_wrote"] == 0, summary["failures"]
    assert summary.get("refusals_that_changed_the_file", 0) == 0, summary["failures"]
    assert summary.get("damage_errors_misnamed", 0) == 0, summary["failures"]


def test_a_cut_copy_is_refused_by_every_open_and_left_unchanged(tmp_path):
    summary = integrity.truncation(tmp_path, FRAMES, cuts=8)
    _print(summary)
    _never_wrong(summary)
    # opened "r", looked at with `writebehind inspect`, opened "a"
    assert summary["errors_by_type"] == {
        "open: TruncatedFileError": 16,
        "inspect exit 1: truncated": 8,
    }


def test_a_cut_copy_zero_filled_to_its_length_never_reads_a_wrong_value(tmp_path):
    # what a file system can leave when a file's size reached the disk before its data
    summary = integrity.truncation(tmp_path, FRAMES, cuts=6, zero_filled=True)
    _print(summary)
    _never_wrong(summary)
    assert summary["opens"] == 12


def test_overwritten_bytes_raise_where_checksummed_and_never_read_wrong(tmp_path):
    summary = integrity.overwrites(tmp_path, FRAMES, uniform=6, in_data=6, seed=20240605)
    _print(summary)
    total = summary["total"]
    _never_wrong(total)
    assert total.get("reader_crashed_or_hung", 0) == 0, summary["trials"]
    assert total["affected_entries_checksummed"] > 0  # the damage did reach checksummed data
    # every read of a checksummed entry whose chunk was hit raised
    assert total.get("affected_entries_returned_checksummed", 0) == 0, total["failures"]
    # and where only data was hit, every entry it did not hit read correctly
    assert total.get("unaffected_entries_that_raised", 0) == 0, total["failures"]


def test_negative_control_without_checksums_overwritten_numbers_read_wrong(tmp_path):
    # The same overwrites on a file written without checksums: the read-back must see the
    # wrong values, which writebehind's checksums turn into DamagedDataError above.
    summary = integrity.overwrites(
        tmp_path, FRAMES, uniform=3, in_data=0, seed=20240605, checksums=False
    )
    _print(summary)
    total = summary["total"]
    assert total.get("affected_entries_checksummed", 0) == 0
    numeric = [key for key in total if key.startswith("wrong_values_undetectable:traj/")]
    assert numeric and total["wrong_values_undetectable"] > 0, summary["trials"]


def test_a_stale_journal_put_back_beside_a_new_file_on_the_same_inode_is_never_applied(
    tmp_path,
):
    summary = restart.restart_after_kills(tmp_path, rounds=2)
    _print(summary)
    assert summary["errors"] == []
    assert summary["values_checked"] == 100_000
    assert summary["values_wrong"] == summary["values_missing"] == 0
    assert summary["values_unreadable"] == 0
    # the scenario is real: each stale journal would have changed the new file
    assert summary["stale_undo_journals_that_would_change_the_file"] == 2
    assert summary["stale_journals_applied"] == 0


def test_negative_control_trusting_any_side_file_applies_the_stale_journal(tmp_path):
    summary = restart.restart_after_kills(tmp_path, rounds=1, trust_any_side_file=True)
    _print(summary)
    assert summary["stale_journals_applied"] == 1
    damaged = summary["values_wrong"] + summary["values_missing"] + summary["values_unreadable"]
    assert damaged > 0
