"""A store that is never closed loses nothing on a normal interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_process_that_exits_without_close_keeps_every_entry(nc_path, reopen):
    script = textwrap.dedent(
        f"""
        import numpy as np
        import writebehind
        store = writebehind.open({str(nc_path)!r}, "w")
        for i in range(5000):
            store.traj.step.append(i)
            store.traj.frame.append(np.full(100, i, dtype=np.float32))
        store.traj.add_metadata("done", True)
        # no close(), no flush(): the interpreter exits here
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with reopen(nc_path) as store:
        assert store.traj.step.read().tolist() == list(range(5000))
        frames = store.traj.frame.read()
        assert frames.shape == (5000, 100) and frames[:, 0].tolist() == list(range(5000))
        assert store.traj.read_metadata() == {"done": True}


def test_process_that_raises_without_close_keeps_every_entry(nc_path, reopen):
    script = textwrap.dedent(
        f"""
        import writebehind
        store = writebehind.open({str(nc_path)!r}, "w")
        for i in range(100):
            store.x.append(i)
        raise SystemExit(3)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == 3
    with reopen(nc_path) as store:
        assert store.x.read().tolist() == list(range(100))
