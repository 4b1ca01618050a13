"""What recovery runs in a fresh interpreter, with a timeout: a damaged HDF5 file can hang
or crash the library, and HDF5's own file locking must be off while recovery holds its lock.

The helper is ``probe_child.py``, run by its path (it imports only netCDF4): this module
starts it and reads its one line of JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HELPER",
    "PROBE_TIMEOUT_SECONDS",
    "ProbeResult",
    "clear_vlen_rows",
    "object_header_addresses",
    "probe",
    "reseal_chunks",
]

PROBE_TIMEOUT_SECONDS = 60.0
#: The helper's file: run by path with ``-P`` (see its docstring).
HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe_child.py")


def _run(
    command: str, *args: str, timeout: float = PROBE_TIMEOUT_SECONDS, helper: str = HELPER
) -> tuple[Any, str]:
    """Run ``helper``'s ``command`` on ``args`` in a fresh interpreter with HDF5's file
    locking off (recovery holds its own lock), which dies with this process; the JSON of
    its last line of output, or None and why there is none."""
    env = dict(
        os.environ, HDF5_USE_FILE_LOCKING="FALSE", WRITEBEHIND_HELPER_PARENT=str(os.getpid())
    )
    try:
        done = subprocess.run(
            [sys.executable, "-P", helper, command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"hung (> {timeout:g} s)"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return None, f"crashed ({tail[0]})"
    return json.loads(lines[-1]), ""


# The probe opens the file, walks every group and reads each variable's first and last
# committed rows (which reach the chunk index and the newest chunks) and its attributes.
@dataclass
class ProbeResult:
    ok: bool
    error: str
    uncommitted_rows: dict[str, int]
    vlen_committed: dict[str, int] = field(default_factory=dict)
    file_id: str | None = None  # the file's writebehind_file_id ("" none); None: not read
    checksummed: bool = True  # whether an appendable variable has checksums (True: unknown)


def probe(path: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> ProbeResult:
    result, problem = _run("probe", path, timeout=timeout)
    if result is None:
        return ProbeResult(False, f"netCDF4 {problem} reading it", {})
    return ProbeResult(
        bool(result["ok"]),
        str(result["error"]),
        dict(result["uncommitted"]),
        dict(result["vlen_committed"]),
        result["file_id"],
        bool(result.get("checksummed", True)),
    )


# -- clearing variable-length rows past the committed length -------------------------------
# Rows of a variable-length variable (str, bytes, dict records) hold references into HDF5's
# global heap. Past the committed length -- inside the variable's extent or past it, in the
# last chunk -- a kill can leave references to heap objects that never reached the file.
# HDF5 frees the old object when it overwrites a row, so the next append there would fail
# ("HDF error") and the store could never continue the file. HDF5 fills the part of a chunk
# that a shrinking extent gives up with the fill value (null references) without freeing
# anything: so each such variable is grown to two chunks past its rows and shrunk back to its
# committed length. netCDF cannot do that: the helper (``shrink``) calls H5Dset_extent
# through ctypes on the HDF5 library netCDF4 loaded.
def clear_vlen_rows(path: str, committed: dict[str, int]) -> str:
    """Shrink the variable-length variables ``committed`` names to their committed length;
    '' on success, else what failed."""
    result, problem = _run("shrink", path, json.dumps(committed))
    if result is None:
        return f"HDF5 {problem} shrinking it"
    failed = result["failed"]
    return f"failed: {', '.join(failed)}" if failed else ""


# -- resealing the chunks a killed flush may have been rewriting -----------------------------
# A numeric appendable variable's chunks carry HDF5's Fletcher32 checksum. A flush rewrites
# the chunk holding the first row past the committed length in place, and a kill in that
# write (the kernel stops a large write between pages on SIGKILL) leaves old and new bytes
# in it: the rows below the committed length have the same bytes in both, but the checksum
# fits neither, so they would be unreadable, and the next append (which reads the chunk to
# merge into it) would fail. So, in a file a killed writer left, every chunk from that one
# on is read, and one that fails its checksum is read again without the check and written
# back: HDF5 computes its checksum anew, in place (a chunk of the same size keeps its
# address). Chunks below it were complete before the last flush and are never rewritten:
# their checksums still catch damage.
def reseal_chunks(path: str) -> tuple[dict[str, int], str]:
    """Reseal the chunks past the committed length of every checksummed variable of
    ``path`` (see the comment above); the chunks resealed per variable, and what failed ('' if
    nothing)."""
    result, problem = _run("reseal", path)
    if result is None:
        return {}, f"HDF5 {problem} resealing it"
    failed = result["failed"]
    return dict(result["resealed"]), f"failed: {', '.join(failed)}" if failed else ""


# -- where the object headers are ------------------------------------------------------------
# The address of the object header of every appendable variable (first dimension unlimited),
# from HDF5's H5Oget_info_by_name3: the first 8 bytes of the native token are the address;
# with the variable's number of dimensions, which its dataset's layout must match.
def object_header_addresses(path: str) -> dict[str, tuple[int, int]]:
    """The object header address and the number of dimensions of each appendable variable
    of ``path``; {} on failure."""
    result, _ = _run("object-headers", path)
    if result is None:
        return {}
    found = result.items()
    return {str(name): (int(address), int(ndim)) for name, (address, ndim) in found}
