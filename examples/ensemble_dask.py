"""An ensemble of replicas run as Dask tasks, writing one Zarr hierarchy, then averaged.

Run it with the ``AWS_*`` variables pointing at your object storage (see
docs/scale-out.md, "Many replicas") and Dask's distributed scheduler installed
(``pip install 'writebehind[zarr,dask]'``: dask[array], distributed and xarray)::

    python examples/ensemble_dask.py s3://my-bucket/ensembles/run-2.zarr \
        [--replicas 4] [--steps 400] [--workers 2]

A local directory (``ens.zarr``) works too. Each replica is one task on a
``dask.distributed`` LocalCluster of worker processes: it writes its own group of the
hierarchy (``replica-0``, ``replica-1``...) with writebehind, flushing every 50 steps, so
that a reader sees its progress and a crash keeps what was flushed. Then the script opens
every group with xarray (lazily, as Dask arrays of the stored chunks), stacks them along a
``replica`` dimension and computes the ensemble's mean energy per step on the same cluster.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import writebehind

ATOMS = 100


def run_replica(ensemble: str, replica: int, steps: int) -> int:
    """One replica: a random walk of ``ATOMS`` atoms, stored step by step in its group;
    the number of steps stored."""
    rng = np.random.default_rng(replica)
    positions = rng.normal(size=(ATOMS, 3)).astype("float32")
    with writebehind.open(ensemble, "w", group=f"replica-{replica}") as store:
        store.add_metadata("replica", replica)
        for step in range(steps):
            positions += rng.normal(scale=0.01, size=positions.shape).astype("float32")
            store.positions.append(positions)
            store.energy.append(float(np.square(positions).sum()))
            if step % 50 == 49:
                store.flush()  # a reader sees the steps so far; they survive a crash
    return steps


def zarr_store(ensemble: str) -> Any:
    """What xarray opens the hierarchy with: a local path as it is, a URL through obstore
    (which takes the same ``AWS_*`` variables as writebehind)."""
    if "://" not in ensemble:
        return ensemble
    import obstore.store
    import zarr.storage

    return zarr.storage.ObjectStore(obstore.store.from_url(ensemble), read_only=True)


def ensemble_mean_energy(ensemble: str, replicas: int) -> Any:
    """The mean energy per step over the replicas (an xarray DataArray, computed)."""
    import xarray as xr

    store = zarr_store(ensemble)
    frames = [
        xr.open_zarr(store, group=f"replica-{i}", consolidated=False) for i in range(replicas)
    ]
    runs = xr.concat(frames, dim="replica")
    return runs["energy"].mean("replica").compute()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ensemble", help="s3://bucket/prefix/ens.zarr, or a local ens.zarr")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        tasks = client.map(
            run_replica,
            [args.ensemble] * args.replicas,
            range(args.replicas),
            [args.steps] * args.replicas,
            pure=False,
        )
        stored = client.gather(tasks)
        mean = ensemble_mean_energy(args.ensemble, args.replicas)
    print(f"{args.replicas} replicas stored {stored} steps into {args.ensemble}")
    first, last = float(mean[0]), float(mean[-1])
    print(f"mean energy over the replicas: first step {first:.2f}, last {last:.2f}")
    return {"stored": stored, "mean_energy": mean.values}


if __name__ == "__main__":
    main()
