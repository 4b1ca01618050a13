"""Engine.append_frame: one entry of each of several variables, staged whole or not at all."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind import StoreClosedError
from writebehind._engine import Engine, FrameLayout, Staging

# The engine's staging, on the netCDF and the memory backend (see conftest.py).
pytestmark = pytest.mark.both_backends

LARGE = (90_000, 3)  # 2.16 MB of float64: an entry the engine stages alone


@pytest.fixture
def store(make_driver: Any, nc_path: Path) -> Any:
    with writebehind.StorageInterface(make_driver(nc_path, "w")) as store:
        yield store


def engine_of(store: Any) -> Engine:
    engine: Engine = store._core.engine
    return engine


def variables(store: Any, first: dict[str, Any]) -> list[Staging]:
    """The staging states of the variables ``first`` creates (one append each)."""
    staging = []
    for name, value in first.items():
        node = store[name]
        node.append(value)
        staging.append(node._var)
    return staging


def test_a_frame_appends_one_entry_to_each_variable(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(
        variables(store, {"step": 0, "time": 0.0, "positions": np.zeros((4, 3))})
    )
    for step in range(1, 4):
        engine.append_frame(layout, [step, step * 0.5, np.full((4, 3), float(step))])
    assert store.step.read().tolist() == [0, 1, 2, 3]
    assert store.time.read().tolist() == [0.0, 0.5, 1.0, 1.5]
    np.testing.assert_array_equal(store.positions.read()[:, 0, 0], [0.0, 1.0, 2.0, 3.0])


def test_a_frame_snapshots_its_entries_when_it_returns(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"x": np.zeros(3), "big": np.zeros(LARGE)}))
    small, big = np.ones(3), np.ones(LARGE)
    engine.append_frame(layout, [small, big])
    small[...] = big[...] = 7.0
    assert store.x.read()[1].tolist() == [1.0, 1.0, 1.0]
    assert store.big.read()[1].max() == 1.0


def test_a_scaled_entry_is_stored_times_its_scale_in_the_variables_dtype(store: Any) -> None:
    engine = engine_of(store)
    staging = variables(
        store,
        {"time": np.float32(0.0), "coordinates": np.zeros((4, 3), np.float32), "n": 0},
    )
    layout = engine.frame_layout(staging, [1.0, 10.0, None])
    nanometers = np.random.default_rng(1).random((4, 3))
    engine.append_frame(layout, [0.002, nanometers, 5])
    stored = store.coordinates.read()[1]
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, (nanometers * 10.0).astype(np.float32))
    assert store.time.read()[1] == np.float32(0.002)
    assert store.n.read().tolist() == [0, 5]


def test_frames_across_many_buffers_keep_their_order(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"a": 0, "b": np.zeros(100)}))
    for i in range(1, 3000):
        engine.append_frame(layout, [i, np.full(100, float(i))])
    assert store.a.read().tolist() == list(range(3000))
    np.testing.assert_array_equal(store.b.read()[:, 99], np.arange(3000.0))


def test_a_frame_of_the_wrong_shape_raises_and_stages_nothing(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"a": 0, "b": np.zeros(3)}))
    before = engine.stats().operations_enqueued
    with pytest.raises(ValueError, match="shape"):
        engine.append_frame(layout, [1, np.zeros(4)])
    assert engine.stats().operations_enqueued == before
    assert len(store.a) == len(store.b) == 1


def test_a_frame_whose_last_entry_cannot_be_cast_raises_and_stages_nothing(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"a": np.zeros(3), "n": np.zeros(2, np.int64)}))
    store._core.engine.flush()  # the writer took the open chunks: the frame opens new ones
    with pytest.raises(TypeError):
        engine.append_frame(layout, [np.ones(3), np.array([0.5, 1.5])])  # float into int
    assert len(store.a) == len(store.n) == 1
    with engine.lock:
        assert not engine._ops  # not even the empty chunks the frame opened
    engine.append_frame(layout, [np.full(3, 2.0), np.array([3, 4])])
    assert store.a.read()[:, 0].tolist() == [0.0, 2.0]  # no entry of the failed frame
    assert store.n.read().tolist() == [[0, 0], [3, 4]]
    assert engine.stats().pending_operations == 0


def test_a_frame_of_a_python_float_into_an_int_variable_is_refused(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"n": 0}))
    with pytest.raises(TypeError):
        engine.append_frame(layout, [1.5])
    assert len(store.n) == 1


def test_a_frame_needs_one_entry_per_variable(store: Any) -> None:
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"a": 0, "b": 0}))
    with pytest.raises(ValueError, match="2 variables, given 1"):
        engine.append_frame(layout, [1])
    assert len(store.a) == len(store.b) == 1


def test_a_frame_layout_refuses_a_variable_given_twice(store: Any) -> None:
    (a,) = variables(store, {"a": 0})
    with pytest.raises(ValueError, match="twice"):
        FrameLayout([a, a], None)


def test_a_frame_layout_refuses_a_variable_of_strings(store: Any) -> None:
    (text,) = variables(store, {"text": "hello"})
    with pytest.raises(ValueError, match="does not hold numbers"):
        engine_of(store).frame_layout([text])


def test_a_frame_layout_needs_one_scale_per_variable(store: Any) -> None:
    staging = variables(store, {"a": 0.0, "b": 0.0})
    with pytest.raises(ValueError, match="1 scales for 2 variables"):
        engine_of(store).frame_layout(staging, [2.0])


def test_a_frame_for_a_closed_store_raises(make_driver: Any, nc_path: Path) -> None:
    store = writebehind.StorageInterface(make_driver(nc_path, "w"))
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"a": 0}))
    store.close()
    with pytest.raises(StoreClosedError):
        engine.append_frame(layout, [1])


def wait_until_written(store: Any) -> None:
    deadline = time.monotonic() + 30  # a liveness bound, not a timing claim (linger: 50 ms)
    while store.stats().pending_operations and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_frame_to_an_idle_store_is_written_without_a_flush(store: Any) -> None:
    # The writer sleeps without a timeout when its queue is empty: a frame that opens its
    # chunks there must wake it, or the frame waits in memory for the next flush.
    engine = engine_of(store)
    layout = engine.frame_layout(variables(store, {"a": 0, "b": np.zeros(3)}))
    store.flush()  # the queue is empty: the writer is idle
    engine.append_frame(layout, [1, np.ones(3)])
    wait_until_written(store)
    assert store.stats().pending_operations == 0
