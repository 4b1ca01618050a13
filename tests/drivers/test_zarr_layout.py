"""The Zarr backend's pure layout rules (``drivers/_zarr_layout.py``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")

from writebehind.drivers._zarr_layout import whole_chunks

pytestmark = pytest.mark.zarr


def test_whole_chunks_are_views_of_the_entries() -> None:
    entries = np.arange(24.0).reshape(4, 2, 3)
    pieces = whole_chunks((2, 2, 3), 4, entries, 0.0)
    assert pieces is not None
    assert [coords for coords, _ in pieces] == [(2, 0, 0), (3, 0, 0)]
    assert all(np.shares_memory(data, entries) for _, data in pieces)
    np.testing.assert_array_equal(np.concatenate([data for _, data in pieces]), entries)


def test_a_partial_chunk_is_padded_with_the_fill_value() -> None:
    entries = np.ones((3, 5))
    pieces = whole_chunks((2, 2), 0, entries, 7.0)
    assert pieces is not None
    got = dict(pieces)
    assert set(got) == {(i, j) for i in range(2) for j in range(3)}
    np.testing.assert_array_equal(got[(1, 2)], [[1.0, 7.0], [7.0, 7.0]])
    assert not np.shares_memory(got[(1, 2)], entries)


def test_entries_starting_inside_a_chunk_are_not_whole_chunks() -> None:
    assert whole_chunks((4, 3), 2, np.zeros((4, 3)), 0.0) is None


def test_entries_with_an_empty_axis_are_not_whole_chunks() -> None:
    assert whole_chunks((4, 1), 0, np.zeros((4, 0)), 0.0) is None
