"""Backends: synchronous, type-agnostic, called only from the writer thread.

``base.StorageIODriver`` is the contract; ``netcdf.NetCDFBackend`` stores NetCDF-4 files,
``memory.MemoryBackend`` Python objects, ``amber.AmberDriver`` AMBER trajectories. None of
them imports the store, the node, the core or the engine (see tests/drivers/).
"""

from .base import NodeRecord, StorageIODriver
from .memory import MemoryBackend
from .netcdf import NetCDFBackend

__all__ = ["MemoryBackend", "NetCDFBackend", "NodeRecord", "StorageIODriver"]
