"""The netCDF-4/HDF5 backend and everything it knows about HDF5.

``backend`` is the driver (:class:`NetCDFBackend`); the rest keeps its files whole across a
crash: ``recovery`` (``recover``, :class:`RecoveryReport`) puts a file back to its last
flush from the undo journal of chunk indexes (``journal``), the metadata journal
(``metajournal``, over the ranges ``stable`` proves stable), the rollback copy and the mark
of a recovery under way (``recoverymark``); ``superblock`` reads the HDF5 superblock,
``hdf5`` calls the HDF5 library netCDF4 loaded, ``probe`` opens a possibly damaged file in a
fresh interpreter (the helper ``probe_child``, which imports only netCDF4), ``sidefiles``
names and creates the files kept beside a netCDF file, ``shapes`` reads variables' shapes
and ``descriptors`` tracks the files open in this process.

Nothing outside this package imports those modules: the rest of writebehind reaches them
through the names exported here (a test of the import graph checks it).
"""

from __future__ import annotations

from .backend import LIBRARY_LOCK, NetCDFBackend, chunk_shape
from .recovery import RecoveryReport, recover

__all__ = ["LIBRARY_LOCK", "NetCDFBackend", "RecoveryReport", "chunk_shape", "recover"]
