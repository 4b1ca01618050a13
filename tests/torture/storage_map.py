"""Where each variable's data lies in an HDF5 file; print it as one JSON object.

Usage: ``python storage_map.py PATH``

Run in a process of its own (h5py brings a second HDF5 library, which must not share a
process with netCDF4's). For each dataset holding data: ``checksummed`` (the Fletcher32
filter), ``rows`` (entries a chunk holds; null for contiguous storage, a fixed variable) and
``extents``, ``[first entry, address, size]`` of each chunk (``[0, address, size]`` for
contiguous storage). Dimension scales, which hold no data, are left out.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import h5py


def storage_map(path: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def visit(name: str, item: Any) -> None:
        if not isinstance(item, h5py.Dataset) or item.id.get_storage_size() == 0:
            return
        if item.chunks is None:
            out[name] = {
                "checksummed": False,
                "rows": None,
                "extents": [[0, item.id.get_offset(), item.id.get_storage_size()]],
            }
            return
        infos = [item.id.get_chunk_info(i) for i in range(item.id.get_num_chunks())]
        out[name] = {
            "checksummed": bool(item.fletcher32),
            "rows": item.chunks[0],
            "extents": sorted([i.chunk_offset[0], i.byte_offset, i.size] for i in infos),
        }

    with h5py.File(path, "r", locking=False) as file:
        file.visititems(visit)
    return out


if __name__ == "__main__":
    print(json.dumps(storage_map(sys.argv[1])))
