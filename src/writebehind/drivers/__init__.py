"""Backends: synchronous, type-agnostic, called from the writer thread (``chunk_entries``
and ``check_name`` excepted: they are pure).

``base.StorageIODriver`` is the contract; ``netcdf.NetCDFBackend`` stores NetCDF-4 files,
``memory.MemoryBackend`` Python objects, ``amber.AmberDriver`` AMBER trajectories,
``zarr.ZarrBackend`` and ``icechunk.IcechunkBackend`` Zarr v3 stores (imported only when
used: they need the optional zarr and icechunk packages). None of them imports the store,
the node, the core or the engine (a test of the import graph checks it). The memory,
netCDF, Zarr and Icechunk backends pass one contract suite of the tests; the AMBER driver,
which holds only the variables of its convention, is tested apart.
"""

from .base import NodeRecord, StorageIODriver
from .memory import MemoryBackend
from .netcdf import NetCDFBackend

__all__ = ["MemoryBackend", "NetCDFBackend", "NodeRecord", "StorageIODriver"]
