"""writebehind: NetCDF storage for simulation output that never makes the simulation wait.

The API is openmmtools.storage's::

    from writebehind import StorageInterface, NetCDFIODriver

    store = StorageInterface(NetCDFIODriver("run.nc"))
    store.traj.positions.append(x)   # checked and copied here, written behind
    store.traj.positions.read()      # waits for the writes it must see
    store.close()
"""

from __future__ import annotations

from ._async_store import (
    AsyncHandle,
    AsyncStorageInterface,
    AsyncStorageInterfaceDirVar,
    open_async,
)
from ._engine import EngineStats, Handle
from ._errors import (
    BackgroundWriteError,
    DamagedDataError,
    ForkedStoreError,
    FormatError,
    ReadOnlyError,
    RecoveryError,
    RecoveryNeededError,
    StoreClosedError,
    StoreInUseError,
    TruncatedFileError,
    WriteBehindError,
)
from ._legacy import NetCDFIODriver
from ._node import StorageInterfaceDirVar
from ._store import StorageInterface, open
from ._targets import recover
from .drivers.base import StorageIODriver
from .drivers.memory import MemoryBackend
from .drivers.netcdf import NetCDFBackend, RecoveryReport

__version__ = "0.1.0"

__all__ = [
    "AsyncHandle",
    "AsyncStorageInterface",
    "AsyncStorageInterfaceDirVar",
    "BackgroundWriteError",
    "DamagedDataError",
    "EngineStats",
    "ForkedStoreError",
    "FormatError",
    "Handle",
    "MemoryBackend",
    "NetCDFBackend",
    "NetCDFIODriver",
    "ReadOnlyError",
    "RecoveryError",
    "RecoveryNeededError",
    "RecoveryReport",
    "StorageIODriver",
    "StorageInterface",
    "StorageInterfaceDirVar",
    "StoreClosedError",
    "StoreInUseError",
    "TruncatedFileError",
    "WriteBehindError",
    "__version__",
    "open",
    "open_async",
    "recover",
]
