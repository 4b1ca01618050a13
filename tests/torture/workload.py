"""The torture workload: which variables are written and what entry ``i`` of each holds.

Every entry is a pure function of (variable, index), so a checker that knows only how many
entries were acknowledged can verify each one bit for bit, in any process.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: path -> (kind, entry shape, dtype). Numeric variables of several sizes and one variable
#: of msgpack dict records (variable-length data lives in HDF5's global heap, a different
#: structure from raw chunks).
VARIABLES: dict[str, tuple[str, tuple[int, ...], str]] = {
    "traj/positions": ("array", (400, 3), "<f4"),
    "traj/velocities": ("array", (400, 3), "<f8"),
    "traj/box": ("array", (3, 3), "<f8"),
    "energies": ("array", (), "<f8"),
    "log": ("record", (), ""),
    "checkpoints/state": ("array", (64,), "<i8"),
    # 1 MiB entries, one per HDF5 chunk: its chunk index (a B-tree of 64 entries a node)
    # splits after 64 entries. Not in DEFAULT: tools/torture.py uses it on its own.
    "big": ("array", (131072,), "<f8"),
}
DEFAULT = [path for path in VARIABLES if path != "big"]

#: ``checkpoints/state`` (in a group of its own) is created only once the first variable
#: the child writes holds this many entries, so that a later flush creates a group and a
#: variable: a kill in that flush must not cost the entries flushed before it.
LATE = {"checkpoints/state": 12}


def _seed(path: str, index: int) -> int:
    digest = hashlib.blake2b(f"{path}#{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def entry(path: str, index: int) -> Any:
    """Entry ``index`` of variable ``path``."""
    kind, shape, dtype = VARIABLES[path]
    rng = np.random.default_rng(_seed(path, index))
    if kind == "record":
        return {"step": index, "blob": rng.bytes(int(rng.integers(1, 600)))}
    return rng.random(shape).astype(dtype)


def same(path: str, index: int, got: Any) -> bool:
    """Whether ``got`` is entry ``index`` of ``path``, bit for bit."""
    want = entry(path, index)
    if VARIABLES[path][0] == "record":
        return bool(got == want)
    got = np.asarray(got)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()


# -- the integrity torture's file ----------------------------------------------------------
#: What the integrity torture (``torture/integrity.py``) writes besides DEFAULT: a str per
#: entry (kept, like dict records, in HDF5's global heap) and two fixed variables, written
#: once. None of them carries a checksum: HDF5 checksums chunks of numeric data only.
TEXT = "labels"
FIXED: dict[str, Any] = {
    "params": np.arange(100.0) * 0.5,
    "title": "writebehind integrity torture",
}


def text(index: int) -> str:
    """Entry ``index`` of :data:`TEXT` (of varying length)."""
    return f"frame {index}: " + "ab" * (index % 29)


def expected(path: str, index: int | None = None) -> Any:
    """Entry ``index`` of ``path`` in the integrity file (``index`` None: a fixed value)."""
    if path in FIXED:
        return FIXED[path]
    if path == TEXT:
        return text(int(index or 0))
    return entry(path, int(index or 0))


def matches(path: str, index: int | None, got: Any) -> bool:
    """Whether ``got`` is entry ``index`` of ``path`` in the integrity file, bit for bit."""
    if path in VARIABLES:
        return same(path, int(index or 0), got)
    want = expected(path, index)
    if isinstance(want, str):
        return isinstance(got, str) and got == want
    got = np.asarray(got)
    return got.dtype == want.dtype and got.shape == want.shape and got.tobytes() == want.tobytes()
