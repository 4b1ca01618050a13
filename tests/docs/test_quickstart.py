"""The README's quick start, end to end."""

from __future__ import annotations

import numpy as np

import writebehind
from writebehind import NetCDFIODriver, StorageInterface


def test_append_then_read_back_after_reopen(nc_path, ureg):
    with StorageInterface(NetCDFIODriver(str(nc_path))) as store:
        for step in range(10):
            store.traj.positions.append(np.full((5, 3), step, dtype=np.float64))
        store.temperature.write(300 * ureg.kelvin)
    with writebehind.open(nc_path, "r") as store:
        frames = store.traj.positions.read()
        assert frames.shape == (10, 5, 3)
        assert frames[:, 0, 0].tolist() == list(range(10))
        assert store.temperature.read() == 300 * ureg.kelvin
