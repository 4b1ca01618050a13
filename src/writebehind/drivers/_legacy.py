"""openmmtools.storage's synchronous driver API, kept for code written against it."""

from __future__ import annotations

from typing import Any

__all__ = ["LegacyDriverMixin"]


class LegacyDriverMixin:
    """Methods of openmmtools' NetCDFIODriver beyond the driver contract."""

    _owner: Any

    def _init_legacy(self) -> None:
        self._owner = None  # weakref to the Engine of the store using this driver
