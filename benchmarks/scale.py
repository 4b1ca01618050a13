"""What a flush that changes a file's structure costs as the file grows (issue 16).

Usage: ``.venv/bin/python -m benchmarks.scale [--sizes 0.1,1] [--repeats 3] [--variables 3000]
[--guard journal,copy] [--out FILE]``

For each size, a new file in a temporary directory beside the repository is filled with
frames of 24 KB (1000 atoms, float64) and flushed; then, median of ``--repeats``:

- ``data_flush_ms``: a flush of one more frame;
- ``new_variable_flush_ms``: a flush carrying one frame and one new variable;
- ``new_attribute_flush_ms``: a flush carrying one frame and one new attribute;
- ``guard_bytes``: the extra disk the structural flush used while it ran: the metadata
  journal's size (``journal``), or the file's (``copy``: the whole-file rollback copy that
  the journal replaced, forced by a journal limit of 0 bytes; what the code did before).

With ``--variables N`` it also times saving the journal of a file of N small variables in
groups of 100 (``many_variables``): finding the raw data asks HDF5 about every dataset.
Prints one JSON document (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import writebehind
from writebehind import _metajournal

FRAME_SHAPE = (1000, 3)
FRAME_BYTES = 8 * FRAME_SHAPE[0] * FRAME_SHAPE[1]


def _ms(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1e3


def _guard_bytes(store: writebehind.StorageInterface, path: Path, guard: str) -> int:
    if guard == "copy":
        return path.stat().st_size
    return int(store.storage_driver._metadata_journal.last_size)  # type: ignore[attr-defined]


def flush_costs(path: Path, gigabytes: float, repeats: int, guard: str) -> dict[str, Any]:
    """Fill a new file with ``gigabytes`` of frames, then time the flushes."""
    frames = int(gigabytes * 1e9) // FRAME_BYTES
    positions = np.random.default_rng(0).random(FRAME_SHAPE)
    limit = _metajournal.JOURNAL_LIMIT_BYTES
    if guard == "copy":
        _metajournal.JOURNAL_LIMIT_BYTES = 0  # every structural flush copies the file
    try:
        with writebehind.open(path, "w") as store:
            traj = store.traj
            for _ in range(frames):
                traj.positions.append(positions)
            store.flush()
            traj.positions.append(positions)
            store.flush()  # the first flush after filling (chunk indexes found)
            data, variable, attribute, guard_bytes = [], [], [], []
            for k in range(repeats):

                def frame() -> None:
                    traj.positions.append(positions)
                    store.flush()

                def new_variable(k: int = k) -> None:
                    traj.positions.append(positions)
                    store[f"extra/v{k}"].append(float(k))
                    store.flush()

                def new_attribute(k: int = k) -> None:
                    traj.positions.append(positions)
                    traj.positions.add_metadata(f"note{k}", f"attribute {k}")
                    store.flush()

                data.append(_ms(frame))
                variable.append(_ms(new_variable))
                guard_bytes.append(_guard_bytes(store, path, guard))
                attribute.append(_ms(new_attribute))
                guard_bytes.append(_guard_bytes(store, path, guard))
            size = path.stat().st_size
    finally:
        _metajournal.JOURNAL_LIMIT_BYTES = limit
        path.unlink(missing_ok=True)
    return {
        "guard": guard,
        "file_gb": round(size / 1e9, 3),
        "data_flush_ms": round(statistics.median(data), 2),
        "new_variable_flush_ms": round(statistics.median(variable), 2),
        "new_attribute_flush_ms": round(statistics.median(attribute), 2),
        "guard_bytes": max(guard_bytes),
        "runs_ms": {
            "data": [round(t, 2) for t in data],
            "new_variable": [round(t, 2) for t in variable],
            "new_attribute": [round(t, 2) for t in attribute],
        },
    }


def many_variables(path: Path, variables: int, repeats: int) -> dict[str, Any]:
    """Time the journal of a file holding ``variables`` small variables."""
    from writebehind.drivers.netcdf import LIBRARY_LOCK

    with writebehind.open(path, "w") as store:
        for n in range(variables):
            store[f"g{n // 100}/v{n}"].append(np.arange(4.0))
        store.flush()
        extents, saves, flushes = [], [], []
        journal = _metajournal.MetadataJournal(str(path))
        for k in range(repeats):
            with LIBRARY_LOCK:  # the writer is idle: this thread may call HDF5
                extents.append(_ms(lambda: _metajournal.raw_extents(str(path))))
                saves.append(_ms(lambda: journal.save(durable=False)))
                journal.void(durable=False)

            def new_variable(k: int = k) -> None:
                store[f"extra/v{k}"].append(float(k))
                store.flush()

            flushes.append(_ms(new_variable))
        journal.close()
        size = path.stat().st_size
    path.unlink()
    return {
        "variables": variables,
        "file_gb": round(size / 1e9, 3),
        "find_raw_data_ms": round(statistics.median(extents), 1),
        "save_journal_ms": round(statistics.median(saves), 1),
        "journal_bytes": journal.last_size,
        "new_variable_flush_ms": round(statistics.median(flushes), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.1,1", help="file sizes in GB, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guard", default="journal,copy", help="journal, copy or both")
    parser.add_argument("--variables", type=int, default=3000, help="0: skip that part")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    results: dict[str, Any] = {"frame_bytes": FRAME_BYTES, "sizes": [], "many_variables": None}
    with tempfile.TemporaryDirectory(prefix="writebehind-scale-", dir=here) as tmp:
        path = Path(tmp) / "scale.nc"
        for gigabytes in (float(size) for size in args.sizes.split(",")):
            for guard in args.guard.split(","):
                row = flush_costs(path, gigabytes, args.repeats, guard)
                results["sizes"].append(row)
                print(json.dumps(row), flush=True)
        if args.variables:
            results["many_variables"] = many_variables(path, args.variables, args.repeats)
            print(json.dumps(results["many_variables"]), flush=True)
    results["statvfs_free_gb"] = round(
        os.statvfs(here).f_bavail * os.statvfs(here).f_frsize / 1e9, 1
    )
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
