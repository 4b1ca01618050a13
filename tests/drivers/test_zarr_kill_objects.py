"""SIGKILL a Zarr or Icechunk writer between two of its object writes, on each mode.

``test_zarr_kill.py`` kills writers at random moments, which rarely fall inside a flush's
few object writes. Here the kill falls at the N-th object write of a writer (N random),
either just before the object is stored (it never is) or just after (stored, its writer
never told): the same child appends entries to ``a`` and ``b`` (entry i filled with i + 1,
so a fill-value row of zeros shows) and prints the lengths each flush acknowledged; after
each kill a reader must find every acknowledged entry and no row, inside the stored shape,
that was not written; the next writer continues the store. How the kill is placed:

- local stores (a ``.zarr`` directory, ``icechunk:///dir``): the child wraps its store's
  ``set`` and SIGKILLs itself (zarr's ``LocalStore.set``; for Icechunk, whose object writes
  happen inside its Rust core, ``IcechunkStore.set`` and ``Session.commit``);
- S3 (the moto server runs in this process and outlives the child): the server's
  ``put_object`` SIGKILLs the child when the N-th PUT into the test's bucket arrives, before
  storing the object (the request then fails) or after: every object write, Icechunk's
  manifests, snapshots and branch references included.

A writer that commits a flush's shapes before its chunks (as zarr's ``Array.append``
does) fails these checks: ``WB_SHAPES_FIRST`` makes the child's driver do that, and
``test_a_shapes_first_writer_fails_the_check`` shows the check catches it; so does an
Icechunk writer committing each variable on its own (``WB_COMMIT_EACH``), not each flush.
The slow tests also run ``test_zarr_kill.py``'s kills at random moments, 10 a mode, on
local Icechunk and on S3 (plain and Icechunk).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind

from .test_zarr_kill import CHILD, SRC
from .test_zarr_kill import check_kills as check_timed_kills

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too


# Test-only hooks, run in the child before the workload (nothing of this is in src):
# WB_KILL_AT=N kills the child at the N-th object write whose key contains WB_KILL_KEY
# (every write when empty; Icechunk's commits count as writes of a key "commit"),
# WB_KILL_WHEN=before|after it; WB_SHAPES_FIRST=1 breaks the driver's commit order (shapes
# stored before the flush's chunks are even sent); WB_COMMIT_EACH=1 makes Icechunk's
# writer commit each variable of a flush on its own.
HOOKS = textwrap.dedent(
    """
    import os
    import signal
    import threading

    _at = int(os.environ.get("WB_KILL_AT", "0"))
    _when = os.environ.get("WB_KILL_WHEN", "before")
    _key = os.environ.get("WB_KILL_KEY", "")
    _count = [0]
    _lock = threading.Lock()

    def _number(key):
        if _key not in key:
            return 0
        with _lock:
            _count[0] += 1
            return _count[0]

    def _kill_if(n, when):
        if n == _at and when == _when:
            os.kill(os.getpid(), signal.SIGKILL)

    def _async_write(set_):
        async def set(self, key, *args, **kwargs):
            n = _number(key)
            _kill_if(n, "before")
            result = await set_(self, key, *args, **kwargs)
            _kill_if(n, "after")
            return result
        return set

    def _commit(commit):
        def wrapped(self, *args, **kwargs):
            n = _number("commit")
            _kill_if(n, "before")
            result = commit(self, *args, **kwargs)
            _kill_if(n, "after")
            return result
        return wrapped

    if _at:
        import zarr.storage
        zarr.storage.LocalStore.set = _async_write(zarr.storage.LocalStore.set)
        try:
            import icechunk
        except ImportError:
            pass
        else:
            icechunk.IcechunkStore.set = _async_write(icechunk.IcechunkStore.set)
            icechunk.Session.commit = _commit(icechunk.Session.commit)

    if os.environ.get("WB_SHAPES_FIRST"):
        from writebehind.drivers import _zarr_io
        from writebehind.drivers.zarr import ZarrBackend

        _add, _wait = _zarr_io.PendingWrites.add, _zarr_io.PendingWrites.wait

        def _held_add(self, keys, nbytes, write):  # chunks are sent only at the next wait
            self.__dict__.setdefault("held", []).append((keys, nbytes, write))

        def _send_then_wait(self):
            for held in self.__dict__.pop("held", []):
                _add(self, *held)
            _wait(self)

        _commit_lengths = ZarrBackend.commit_lengths

        def _shapes_first(self, lengths, durable):
            self.sync = lambda durable=False: None
            try:
                _commit_lengths(self, lengths, durable)  # the shapes...
            finally:
                del self.sync
            self.sync(durable)  # ...then the chunks

        _zarr_io.PendingWrites.add = _held_add
        _zarr_io.PendingWrites.wait = _send_then_wait
        ZarrBackend.commit_lengths = _shapes_first

    if os.environ.get("WB_COMMIT_EACH"):
        from writebehind.drivers.icechunk import IcechunkBackend

        _icechunk_commit_lengths = IcechunkBackend.commit_lengths

        def _commit_each(self, lengths, durable):  # one commit a variable, not a flush
            for path in sorted(lengths):
                _icechunk_commit_lengths(self, {path: lengths[path]}, durable)

        IcechunkBackend.commit_lengths = _commit_each
    """
)


class ServerKills:
    """The moto server's ``put_object``, killing the child at the N-th PUT of a bucket."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.victim: subprocess.Popen[str] | None = None
        self.at, self.when, self.puts, self.killed = 0, "before", 0, False
        self._lock = threading.Lock()

    def arm(self, victim: subprocess.Popen[str], at: int, when: str) -> None:
        with self._lock:
            self.victim, self.at, self.when, self.puts, self.killed = victim, at, when, 0, False

    def wrap(self, put_object: Callable[..., Any]) -> Callable[..., Any]:
        from moto.s3.exceptions import S3ClientError

        def put(backend: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                victim = self.victim if bucket_name == self.bucket else None
                if victim is not None:
                    self.puts += 1
                n = self.puts if victim is not None else 0
            if victim is not None and n == self.at and self.when == "before":
                self._kill(victim)
                raise S3ClientError("InternalError", "the writer was killed before this write")
            stored = put_object(backend, bucket_name, key_name, *args, **kwargs)
            if victim is not None and n == self.at and self.when == "after":
                self._kill(victim)
            return stored

        return put

    def _kill(self, victim: subprocess.Popen[str]) -> None:
        # SIGKILL takes effect before the child runs again: no request of it follows
        # (requests already in flight may still be stored, as after any crash)
        os.kill(victim.pid, signal.SIGKILL)
        self.killed = True


@pytest.fixture
def server_kills(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerKills]:
    from moto.s3.models import S3Backend

    kills = ServerKills(s3_bucket)
    monkeypatch.setattr(S3Backend, "put_object", kills.wrap(S3Backend.put_object))
    yield kills


def run_until_killed(
    target: str,
    at: int,
    when: str,
    *,
    key: str = "",
    server: ServerKills | None = None,
    shapes_first: bool = False,
    commit_each: bool = False,
) -> tuple[int, int]:
    """Run the child until it is killed at its ``at``-th object write (by itself, or by
    ``server``); the last lengths of ``a`` and ``b`` it acknowledged."""
    pythonpath = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath, "ICECHUNK_LOG": "error"}
    if server is None:
        env.update(WB_KILL_AT=str(at), WB_KILL_WHEN=when, WB_KILL_KEY=key)
    if shapes_first:
        env["WB_SHAPES_FIRST"] = "1"
    if commit_each:
        env["WB_COMMIT_EACH"] = "1"
    child = subprocess.Popen(
        [sys.executable, "-c", HOOKS + CHILD, target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    if server is not None:
        server.arm(child, at, when)
    try:
        out, err = child.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        pytest.fail(f"the kill at object write {at} never came: the child wrote fewer")
    assert child.returncode == -signal.SIGKILL, f"the child ended otherwise:\n{err}"
    if server is not None:
        assert server.killed
    # only the child's "a b" lines: Icechunk logs a warning to stdout at open
    acked = [line.split() for line in out.splitlines() if line.replace(" ", "").isdigit()]
    return (int(acked[-1][0]), int(acked[-1][1])) if acked else (0, 0)


def check_store(target: str, acked: tuple[int, int], *, one_commit: bool) -> tuple[int, int]:
    """What a reader finds after a kill: every acknowledged entry, and each entry inside
    the shape the one written (no fill-value row); the lengths found."""
    try:
        store = writebehind.open(target, "r")
    except FileNotFoundError:
        assert acked == (0, 0), "a store that acknowledged entries is gone"
        return (0, 0)
    with store:
        a = store.a.read() if "a" in store else np.zeros((0, 256))
        b = store.b.read() if "b" in store else np.zeros((0, 3), dtype="int32")
    assert len(a) >= acked[0] and len(b) >= acked[1], "acknowledged entries lost"
    np.testing.assert_array_equal(a, np.arange(1, len(a) + 1)[:, None] * np.ones((1, 256)))
    np.testing.assert_array_equal(b, np.arange(1, len(b) + 1)[:, None] * np.ones((1, 3), "i4"))
    if one_commit:  # Icechunk: a flush commits both variables at once
        assert len(a) == len(b)
    return len(a), len(b)


def check_kills(
    target: str,
    runs: int,
    seed: int,
    most: int,
    *,
    server: ServerKills | None = None,
    one_commit: bool = False,
) -> list[tuple[int, str, int]]:
    """Kill ``runs`` writers of ``target`` one after another, each at a random object write
    among the first ``most``, before or after it, checking the store after each; the
    (write, before/after, length of ``a`` found) of each run."""
    rng = random.Random(seed)
    acked, done = (0, 0), []
    for _ in range(runs):  # each run continues the store the previous one left
        at, when = rng.randint(1, most), rng.choice(["before", "after"])
        got = run_until_killed(target, at, when, server=server)
        acked = (max(acked[0], got[0]), max(acked[1], got[1]))
        found = check_store(target, acked, one_commit=one_commit)
        done.append((at, when, found[0]))
    return done


def test_writers_killed_between_object_writes_lose_nothing(tmp_path: Path) -> None:
    done = check_kills(str(tmp_path / "killed.zarr"), runs=3, seed=21, most=40)
    assert done[-1][2] > 0  # some flush was acknowledged and found


def test_a_kill_between_a_flush_chunks_and_shapes_loses_nothing(tmp_path: Path) -> None:
    # pinpointed: just before the fourth write of `a`'s zarr.json (the second flush's new
    # shape; its chunks are stored): the first flush's entries are there, and no more
    target = str(tmp_path / "pinpoint.zarr")
    acked = run_until_killed(target, 4, "before", key="a/zarr.json")
    assert acked[0] > 0
    assert check_store(target, acked, one_commit=False)[0] == acked[0]


def test_a_shapes_first_writer_fails_the_check(tmp_path: Path) -> None:
    # killed just after the fourth write of `a`'s zarr.json (a flush's new shape): stored
    # before the flush's chunks, it counts rows never written (the check must see them)
    target = str(tmp_path / "shapes-first.zarr")
    acked = run_until_killed(target, 4, "after", key="a/zarr.json", shapes_first=True)
    with pytest.raises(AssertionError, match="not equal"):
        check_store(target, acked, one_commit=False)


def test_the_writer_kept_in_order_passes_the_same_kill(tmp_path: Path) -> None:
    # the same kill on the real writer: that shape is stored after its chunks
    target = str(tmp_path / "in-order.zarr")
    acked = run_until_killed(target, 4, "after", key="a/zarr.json")
    assert check_store(target, acked, one_commit=False)[0] > 0


def test_an_icechunk_writer_committing_each_variable_fails_the_check(tmp_path: Path) -> None:
    # killed just after the third commit: with one commit a variable, `a` of the second
    # flush is committed and `b` is not (the check must see the flush torn)
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk://{tmp_path}/commit-each"
    acked = run_until_killed(url, 3, "after", key="commit", commit_each=True)
    with pytest.raises(AssertionError):
        check_store(url, acked, one_commit=True)


def test_the_icechunk_writer_passes_the_same_kill(tmp_path: Path) -> None:
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk://{tmp_path}/one-commit"
    acked = run_until_killed(url, 3, "after", key="commit")
    assert check_store(url, acked, one_commit=True)[0] > 0


@pytest.mark.slow
def test_many_writers_killed_between_object_writes_lose_nothing(tmp_path: Path) -> None:
    done = check_kills(str(tmp_path / "killed.zarr"), runs=12, seed=22, most=60)
    assert done[-1][2] > 0


@pytest.mark.slow
def test_icechunk_writers_killed_between_writes_lose_nothing(tmp_path: Path) -> None:
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk://{tmp_path}/killed"
    done = check_kills(url, runs=12, seed=23, most=40, one_commit=True)
    assert done[-1][2] > 0


@pytest.mark.slow
def test_s3_writers_killed_between_object_writes_lose_nothing(
    s3_bucket: str, server_kills: ServerKills
) -> None:
    url = f"s3://{s3_bucket}/killed.zarr"
    done = check_kills(url, runs=12, seed=24, most=60, server=server_kills)
    assert done[-1][2] > 0


@pytest.mark.slow
def test_icechunk_s3_writers_killed_between_object_writes_lose_nothing(
    s3_bucket: str, server_kills: ServerKills
) -> None:
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk+s3://{s3_bucket}/killed"
    done = check_kills(url, runs=12, seed=25, most=60, server=server_kills, one_commit=True)
    assert done[-1][2] > 0


# Kills at random moments (test_zarr_kill.py's), on the modes that file runs briefly or not
@pytest.mark.slow
def test_many_icechunk_writers_killed_at_random_moments_lose_nothing(tmp_path: Path) -> None:
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk://{tmp_path}/timed"
    assert check_timed_kills(url, runs=10, seed=31, one_commit=True) > 0


@pytest.mark.slow
def test_s3_writers_killed_at_random_moments_lose_nothing(s3_bucket: str) -> None:
    assert check_timed_kills(f"s3://{s3_bucket}/timed.zarr", runs=10, seed=32) > 0


@pytest.mark.slow
def test_icechunk_s3_writers_killed_at_random_moments_lose_nothing(s3_bucket: str) -> None:
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk+s3://{s3_bucket}/timed"
    assert check_timed_kills(url, runs=10, seed=33, one_commit=True) > 0


@pytest.mark.xfail(
    strict=True,
    reason="a known defect (Icechunk 1.1 and 2.3 alike): the prefix then holds the "
    "repository's first object and no branch; opening finds no repository, and creating "
    "one refuses a prefix that is not clean, for every later writer",
)
def test_a_writer_killed_creating_an_icechunk_repository_on_s3_leaves_it_usable(
    s3_bucket: str, server_kills: ServerKills
) -> None:
    # killed just after the repository's first object (its first snapshot) is stored, before
    # its branch exists: nothing was acknowledged, and the next writer must still open it
    pytest.importorskip("icechunk", reason="needs the icechunk extra")
    url = f"icechunk+s3://{s3_bucket}/killed"
    assert run_until_killed(url, 1, "after", server=server_kills) == (0, 0)
    acked = run_until_killed(url, 25, "after", server=server_kills)
    assert check_store(url, acked, one_commit=True)[0] > 0
