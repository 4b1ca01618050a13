"""Random kills of a writer with checksums: ``.venv/bin/python tools/torture_checksums.py``.

100 SIGKILLs at random moments (seed 20240609, 2 chains) of children appending with
``checksums=True`` (Fletcher32 per chunk); prints the summary as JSON (as in
``benchmarks/results/torture-checksums.json``). A kill inside the in-place rewrite of a chunk
tears its checksum, which recovery reseals.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from torture import harness


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        trials = harness.random_kills(Path(tmp), 100, 20240609, chains=2, checksums=True)
    summary = harness.summarize(trials)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["failures"] = harness.failures(trials)[:5]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
