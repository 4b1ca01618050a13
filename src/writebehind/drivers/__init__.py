"""Storage drivers: synchronous, type-agnostic, called only from the writer thread."""

from .base import NodeRecord, StorageIODriver
from .netcdf import NetCDFIODriver

__all__ = ["NetCDFIODriver", "NodeRecord", "StorageIODriver"]
