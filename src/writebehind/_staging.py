"""Staging memory for large entries, made ready by the writer before the callers need it.

An entry over ``ALONE_ENTRY_BYTES`` is staged in a buffer of its own (see ``_engine``).
The first touch of a fresh page costs about 2 us per 4 KiB page on a VM: 1.2 ms for a 2.4 MB
entry whose copy into warm memory takes about 50 us. Written buffers are recycled, but a
caller that appends faster than the disk writes keeps more entries pending than there are
written buffers to recycle, and each new one is fresh memory.

So the writer thread keeps a few buffers of each such variable *pre-faulted*: mapped with
``MAP_POPULATE``, which maps all their pages in one system call (about half the cost per
page, with the GIL released, on the writer's core instead of the caller's). How many
follows the variable's recent append rate (``PREFAULT_HORIZON_SECONDS`` of appends), within
the bounds the engine already had for memory beyond the pending entries: its recycling
budget per variable and per store, and ``max_pending_bytes`` for pending and pre-faulted
bytes together. A variable with no large append for ``IDLE_SECONDS`` is no longer topped up.
"""

from __future__ import annotations

import math
import mmap

__all__ = ["IDLE_SECONDS", "PREFAULT_HORIZON_SECONDS", "AppendRate", "can_prefault"]

#: Pre-faulted buffers for this long of a variable's recent append rate.
PREFAULT_HORIZON_SECONDS = 0.02
#: A variable with no large append for this long is no longer topped up.
IDLE_SECONDS = 1.0
#: Weight of the newest interval in the rate estimate: a burst raises it at once, a pause
#: lowers it by half per writer's pass.
_NEWEST_WEIGHT = 0.5


def can_prefault() -> bool:
    """Whether this platform maps pages in one call (``MAP_POPULATE``, Linux)."""
    return getattr(mmap, "MAP_POPULATE", 0) != 0


class AppendRate:
    """How fast one variable's large entries arrive, as the writer sees it.

    Callers count appends (``appended``, under the engine's lock); the writer folds them
    into ``per_second`` at each of its passes (``update``, lock held).
    """

    __slots__ = ("appended", "counted", "last_append", "per_second", "since")

    def __init__(self, now: float):
        self.appended = 0
        self.counted = 0
        self.since = now
        self.last_append = now
        self.per_second = 0.0

    def update(self, now: float) -> float:
        """Fold the appends since the last update into the rate; return it."""
        elapsed = now - self.since
        if elapsed <= 0:
            return self.per_second
        new = self.appended - self.counted
        if new:
            self.last_append = now
        current = new / elapsed
        # A burst counts at once in full; a pause halves the estimate at each pass.
        self.per_second = max(current, _NEWEST_WEIGHT * self.per_second)
        self.counted = self.appended
        self.since = now
        return self.per_second

    def idle(self, now: float) -> bool:
        return now - self.last_append > IDLE_SECONDS

    def wanted(self) -> int:
        """Buffers to keep ready: the appends expected over the horizon (at least one)."""
        return max(1, math.ceil(self.per_second * PREFAULT_HORIZON_SECONDS))
