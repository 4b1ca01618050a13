"""The workloads each library runs: append frames one by one, read them back, a toy loop.

Every writer takes a path, a frame and a count, and returns the caller's time of each
append (ns) and the whole job's time (open, appends, close). The frame is changed in place
between appends, as a simulation changes its positions, outside the timed region.
writebehind's writers also say what the writer thread did (see ``WriteResult``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter, perf_counter_ns
from typing import Any

import numpy as np

VARIABLE = "x"


@dataclass
class WriteResult:
    latencies_ns: np.ndarray[Any, Any]  # caller's time of each append; empty for bulk
    whole_seconds: float
    backpressure_waits: int | None = None  # writebehind only
    # writebehind (sync) only: the bytes its writer wrote, the writer thread's time inside
    # the driver's writes (HDF5's chunk I/O and filters: the checksum's cost lands there),
    # and the time from the first append to close() returning (everything on disk).
    bytes_written: int | None = None
    writer_seconds: float | None = None
    drain_seconds: float | None = None


def make_frame(shape: tuple[int, ...]) -> Any:
    """A frame of ``shape`` float64 (a Python float for the scalar case)."""
    if shape == ():
        return 0.5
    return np.random.default_rng(0).random(shape)


def bump(frame: Any, i: int) -> Any:
    """The next frame: changed in place for arrays, a new float for scalars."""
    if isinstance(frame, float):
        return frame + 1.0
    frame.flat[0] = i
    return frame


def _timed_appends(append: Callable[[Any], Any], frame: Any, n: int) -> np.ndarray[Any, Any]:
    latencies = np.empty(n, dtype=np.int64)
    for i in range(n):
        frame = bump(frame, i)
        started = perf_counter_ns()
        append(frame)
        latencies[i] = perf_counter_ns() - started
    return latencies


# -- writers ---------------------------------------------------------------------------
def timed_netcdf_driver(path: str, mode: str, checksums: bool = False) -> Any:
    """A ``NetCDFBackend`` that adds up the time its ``write_entries`` calls take (on the
    writer thread) in ``writer_seconds``: one ``perf_counter`` pair per chunk write."""
    return _timed_driver_class()(path, mode, checksums=checksums)


@functools.cache
def _timed_driver_class() -> Any:
    import writebehind

    class TimedNetCDFBackend(writebehind.NetCDFBackend):
        writer_seconds = 0.0

        def write_entries(self, path: str, start: int, entries: Any) -> None:
            started = perf_counter()
            try:
                super().write_entries(path, start, entries)
            finally:
                self.writer_seconds += perf_counter() - started

    return TimedNetCDFBackend


def write_writebehind(path: str, frame: Any, n: int, checksums: bool = False) -> WriteResult:
    import writebehind

    started = perf_counter()
    driver = timed_netcdf_driver(path, "w", checksums=checksums)
    result = _timed_store_write(writebehind.StorageInterface(driver), frame, n, started)
    result.writer_seconds = driver.writer_seconds
    return result


def _timed_store_write(store: Any, frame: Any, n: int, started: float) -> WriteResult:
    """Append ``n`` frames to ``store``'s trajectory variable, timing each, then close it."""
    node = store.traj[VARIABLE]
    appending = perf_counter()
    latencies = _timed_appends(node.append, frame, n)
    store.close()
    ended = perf_counter()
    stats = store.stats()
    return WriteResult(
        latencies,
        ended - started,
        stats.backpressure_waits,
        bytes_written=stats.bytes_written,
        drain_seconds=ended - appending,
    )


def write_writebehind_checksums(path: str, frame: Any, n: int) -> WriteResult:
    """writebehind with HDF5's Fletcher32 checksums on (``checksums=True``)."""
    return write_writebehind(path, frame, n, checksums=True)


def write_writebehind_async(path: str, frame: Any, n: int) -> WriteResult:
    import anyio

    import writebehind

    async def job() -> WriteResult:
        latencies = np.empty(n, dtype=np.int64)
        started = perf_counter()
        store = writebehind.AsyncStorageInterface(writebehind.NetCDFIODriver(path, "w"))
        async with store:
            node = store.traj[VARIABLE]
            current = frame
            for i in range(n):
                current = bump(current, i)
                t = perf_counter_ns()
                await node.append(current)
                latencies[i] = perf_counter_ns() - t
        return WriteResult(latencies, perf_counter() - started)

    return anyio.run(job)


def _netcdf_variable(dataset: Any, shape: tuple[int, ...]) -> Any:
    dims = [dataset.createDimension("entry", None).name]
    for axis, size in enumerate(shape, start=1):
        dims.append(dataset.createDimension(f"axis{axis}", size).name)
    return dataset.createVariable(VARIABLE, "f8", tuple(dims))


def write_netcdf4(path: str, frame: Any, n: int) -> WriteResult:
    """netCDF4 by hand, as a user would: an unlimited dimension, ``var[i] = x``."""
    import netCDF4

    started = perf_counter()
    dataset = netCDF4.Dataset(path, "w")
    variable = _netcdf_variable(dataset, np.shape(frame))
    counter = iter(range(n))

    def append(x: Any) -> None:
        variable[next(counter)] = x

    latencies = _timed_appends(append, frame, n)
    dataset.close()
    return WriteResult(latencies, perf_counter() - started)


def write_h5py(path: str, frame: Any, n: int) -> WriteResult:
    """h5py by hand: a resizable dataset, ``resize`` then ``ds[i] = x``."""
    import h5py

    started = perf_counter()
    file = h5py.File(path, "w")
    shape = np.shape(frame)
    dataset = file.create_dataset(VARIABLE, (0, *shape), maxshape=(None, *shape), dtype="f8")
    counter = iter(range(n))

    def append(x: Any) -> None:
        i = next(counter)
        dataset.resize(i + 1, axis=0)
        dataset[i] = x

    latencies = _timed_appends(append, frame, n)
    file.close()
    return WriteResult(latencies, perf_counter() - started)


def write_openmmtools(path: str, frame: Any, n: int) -> WriteResult:
    from openmmtools import storage

    started = perf_counter()
    store = storage.StorageInterface(storage.NetCDFIODriver(path, "w"))
    latencies = _timed_appends(getattr(store.traj, VARIABLE).append, frame, n)
    store.storage_driver.close()
    return WriteResult(latencies, perf_counter() - started)


def bulk_data(frame: Any, n: int) -> np.ndarray[Any, Any]:
    """The ``n`` frames the appenders write, as one array (built outside any timing)."""
    data = np.empty((n, *np.shape(frame)))
    data[...] = frame
    data.reshape(n, -1)[:, 0] = np.arange(n)
    return data


def write_bulk(path: str, data: np.ndarray[Any, Any]) -> WriteResult:
    """The format's limit: the same data in one netCDF4 write (same layout as by hand)."""
    import netCDF4

    started = perf_counter()
    dataset = netCDF4.Dataset(path, "w")
    variable = _netcdf_variable(dataset, data.shape[1:])
    variable[:] = data
    dataset.close()
    return WriteResult(np.empty(0, dtype=np.int64), perf_counter() - started)


def copy_floor(frame: Any, n: int) -> np.ndarray[Any, Any]:
    """The time of the snapshot alone: ``np.array(x, copy=True)`` of each frame, dropped
    at once (so its memory is reused: the issue's "plain copy")."""
    return _timed_appends(lambda x: np.array(x, copy=True), frame, n)


def kept_copy_floor(frame: Any, n: int) -> np.ndarray[Any, Any]:
    """The same copies, all kept: each lands in fresh memory, as a backlog's must."""
    kept: list[Any] = []
    return _timed_appends(lambda x: kept.append(np.array(x, copy=True)), frame, n)


# -- Zarr and Icechunk ---------------------------------------------------------------------
#: The Zarr libraries: where each one stores (the worker's path ``<dir>/<library>.nc`` names
#: the store; ``s3`` ones go to the bucket in WRITEBEHIND_BENCH_BUCKET, see run.py).
ZARR_LIBRARIES = (
    "writebehind-zarr",
    "writebehind-zarr-30ms",
    "writebehind-zarr-s3",
    "writebehind-icechunk-s3",
)
#: The library whose local store answers every get and set 30 ms late (zarr's
#: ``LatencyStore``), standing in for distant object storage; its baselines get the same.
LATENCY_LIBRARY = "writebehind-zarr-30ms"
LATENCY_SECONDS = 0.03
#: The environment variable naming the bucket of the S3 libraries.
BUCKET_ENV = "WRITEBEHIND_BENCH_BUCKET"


def zarr_target(path: str, library: str) -> str:
    """The store a Zarr library writes for the worker's ``path``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if library == LATENCY_LIBRARY:
        _add_latency()
    if library in ("writebehind-zarr", LATENCY_LIBRARY):
        return os.path.splitext(path)[0] + ".zarr"
    bucket = os.environ[BUCKET_ENV]
    if library == "writebehind-icechunk-s3":
        return f"icechunk+s3://{bucket}/{stem}"
    return f"s3://{bucket}/{stem}.zarr"


@functools.cache
def _add_latency() -> None:
    """From now on in this process, every Zarr store the backend (and the baselines) make
    is a local one wrapped in zarr's ``LatencyStore`` (the lease excepted)."""
    from zarr.testing.store import LatencyStore

    from writebehind.drivers import _zarr_io

    make_store = _zarr_io.make_store

    def slow_store(target: str, read_only: bool, options: Any) -> Any:
        store = make_store(target, read_only, options)
        return LatencyStore(store, get_latency=LATENCY_SECONDS, set_latency=LATENCY_SECONDS)

    _zarr_io.make_store = slow_store  # type: ignore[assignment]


def write_writebehind_zarr(path: str, frame: Any, n: int, library: str) -> WriteResult:
    """writebehind on a Zarr store (or an Icechunk repository); one flush, at close."""
    import writebehind

    target = zarr_target(path, library)
    started = perf_counter()
    return _timed_store_write(writebehind.open(target, "w"), frame, n, started)


def read_writebehind_zarr(path: str, library: str) -> Any:
    import writebehind

    with writebehind.open(zarr_target(path, library), "r") as store:
        return store.traj[VARIABLE].read()


def _bulk_store(target: str) -> tuple[Any, Callable[[], None]]:
    """A zarr store for ``target`` (emptied), and what makes what was written visible."""
    if target.startswith("icechunk+s3://"):
        import icechunk

        from writebehind.drivers.icechunk import make_storage

        repo = icechunk.Repository.open_or_create(make_storage(target, None))
        session = repo.writable_session("main")
        return session.store, lambda: session.commit("bulk") and None
    from writebehind.drivers import _zarr_io

    remove_zarr(target)
    return _zarr_io.make_store(target, False, None), lambda: None


def write_zarr_bulk(path: str, data: np.ndarray[Any, Any], library: str) -> WriteResult:
    """zarr's own bulk write of the same data to the same kind of store: one array, the
    chunks and codecs writebehind uses, one ``array[:] = data`` (and one commit)."""
    import zarr

    from writebehind.codecs.base import Layout
    from writebehind.drivers._zarr_layout import chunk_shape

    target = zarr_target(path, library).replace(".zarr", "-bulk.zarr")
    if library == "writebehind-icechunk-s3":
        target += "-bulk"
    layout = Layout("numeric", data.dtype, tuple(data.shape[1:]))
    started = perf_counter()
    store, commit = _bulk_store(target)
    array = zarr.create_array(
        store, shape=data.shape, chunks=chunk_shape(layout, True), dtype=data.dtype
    )
    array[:] = data
    commit()
    whole = perf_counter() - started
    remove_zarr(target)
    return WriteResult(np.empty(0, dtype=np.int64), whole)


def xarray_append_per_frame(path: str, frame: Any, n: int, library: str) -> float | None:
    """Seconds per frame of what users do today: ``Dataset.to_zarr(append_dim=...)`` of
    each frame, on the same kind of store (timed over ``n`` frames; None for Icechunk)."""
    if library == "writebehind-icechunk-s3":
        return None
    import xarray

    from writebehind.drivers import _zarr_io

    target = zarr_target(path, library).replace(".zarr", "-xarray.zarr")
    remove_zarr(target)
    store = _zarr_io.make_store(target, False, None)
    started = perf_counter()
    for i in range(n):
        frame = bump(frame, i)
        values = np.asarray(frame)[np.newaxis]
        dims = ["entry", *[f"axis{k}" for k in range(1, values.ndim)]]
        dataset = xarray.Dataset({VARIABLE: (dims, values)})
        if i == 0:
            dataset.to_zarr(store, mode="w", consolidated=False)
        else:
            dataset.to_zarr(store, append_dim="entry", consolidated=False)
    per_frame = (perf_counter() - started) / n
    remove_zarr(target)
    return per_frame


def remove_zarr(target: str) -> None:
    """Delete a Zarr store (a directory, or every object under a prefix) or a repository."""
    import shutil

    if "://" not in target:
        shutil.rmtree(target, ignore_errors=True)
        return
    import obstore.store

    url = target.replace("icechunk+s3://", "s3://")
    objects = obstore.store.from_url(url)
    keys = [meta["path"] for batch in objects.list() for meta in batch]
    if keys:
        obstore.delete(objects, keys)


WRITERS: dict[str, Callable[[str, Any, int], WriteResult]] = {
    "writebehind": write_writebehind,
    "writebehind-async": write_writebehind_async,
    "writebehind-checksums": write_writebehind_checksums,
    "netCDF4": write_netcdf4,
    "h5py": write_h5py,
    "openmmtools": write_openmmtools,
    **{name: functools.partial(write_writebehind_zarr, library=name) for name in ZARR_LIBRARIES},
}


# -- readers ---------------------------------------------------------------------------
def read_writebehind(path: str) -> Any:
    import writebehind

    store = writebehind.StorageInterface(writebehind.NetCDFIODriver(path, "r"))
    try:
        return store.traj[VARIABLE].read()
    finally:
        store.close()


def read_netcdf4(path: str, group: str | None = None) -> Any:
    import netCDF4

    with netCDF4.Dataset(path, "r") as dataset:
        node = dataset[group] if group else dataset
        variable = node.variables[VARIABLE]
        variable.set_auto_maskandscale(False)  # plain arrays, as writebehind returns
        return variable[:]


def read_h5py(path: str) -> Any:
    import h5py

    with h5py.File(path, "r") as file:
        return file[VARIABLE][...]


def read_openmmtools(path: str) -> Any:
    from openmmtools import storage

    store = storage.StorageInterface(storage.NetCDFIODriver(path, "r"))
    try:
        return getattr(store.traj, VARIABLE).read()
    finally:
        store.storage_driver.close()


READERS: dict[str, Callable[[str], Any]] = {
    "writebehind": read_writebehind,
    "writebehind-async": read_writebehind,
    "writebehind-checksums": read_writebehind,
    "netCDF4": read_netcdf4,
    "h5py": read_h5py,
    "openmmtools": read_openmmtools,
    "bulk": read_netcdf4,
    **{name: functools.partial(read_writebehind_zarr, library=name) for name in ZARR_LIBRARIES},
}

#: Where each library's file keeps the variable, for netCDF4's own read of it.
NETCDF_GROUP = {
    "writebehind": "traj",
    "writebehind-async": "traj",
    "writebehind-checksums": "traj",
    "openmmtools": "traj",
}


def timed(fn: Callable[[], Any]) -> float:
    started = perf_counter()
    fn()
    return perf_counter() - started


# -- the toy simulation loop -----------------------------------------------------------
TOY_ATOMS = 1000
TOY_WORK_ELEMENTS = 18_000  # 0.71 ms per step on the 2-CPU EPYC VM, idle (the issue: ~0.7)


def toy_step(positions: np.ndarray[Any, Any], work: np.ndarray[Any, Any]) -> float:
    """About 0.7 ms of single-threaded numpy work on the reference machine; an energy."""
    for _ in range(4):
        np.sin(work, out=work)
        np.exp(work, out=work)
    positions[:, 0] += 1e-3 * work[: len(positions)]
    return float(work[0])


def toy_loop(
    library: str, path: str, steps: int, store_ns: np.ndarray[Any, Any] | None = None
) -> float:
    """The wall time of ``steps`` simulation steps storing a 24 KB frame and an energy.

    ``store_ns``, if given, receives the caller's time of each step's storing.
    """
    if store_ns is None:
        store_ns = np.empty(steps, dtype=np.int64)
    rng = np.random.default_rng(1)
    positions = rng.random((TOY_ATOMS, 3))
    work = rng.random(TOY_WORK_ELEMENTS)
    store, close = _toy_store(library, path)
    started = perf_counter()
    for i in range(steps):
        energy = toy_step(positions, work)
        if store is not None:
            t = perf_counter_ns()
            store(positions, energy)
            store_ns[i] = perf_counter_ns() - t
    close()
    return perf_counter() - started


def _toy_store(library: str, path: str) -> tuple[Any, Callable[[], None]]:
    """``(store(positions, energy), close)`` for ``library``; ``(None, noop)`` for none."""
    if library == "none":
        return None, lambda: None
    if library in ("writebehind", "writebehind-checksums"):
        import writebehind

        checksums = library == "writebehind-checksums"
        wb = writebehind.StorageInterface(
            writebehind.NetCDFIODriver(path, "w", checksums=checksums)
        )
        positions_node, energy_node = wb.traj.positions, wb.traj.energy

        def store_wb(positions: Any, energy: float) -> None:
            positions_node.append(positions)
            energy_node.append(energy)

        return store_wb, wb.close
    if library == "openmmtools":
        from openmmtools import storage

        omm = storage.StorageInterface(storage.NetCDFIODriver(path, "w"))

        def store_omm(positions: Any, energy: float) -> None:
            omm.traj.positions.append(positions)
            omm.traj.energy.append(energy)

        return store_omm, omm.storage_driver.close
    if library == "netCDF4":
        import netCDF4

        dataset = netCDF4.Dataset(path, "w")
        pos_var = _netcdf_variable(dataset, (TOY_ATOMS, 3))
        energy_var = dataset.createVariable("energy", "f8", ("entry",))
        counter = iter(range(1 << 62))

        def store_nc(positions: Any, energy: float) -> None:
            i = next(counter)
            pos_var[i] = positions
            energy_var[i] = energy

        return store_nc, dataset.close
    if library == "h5py":
        import h5py

        file = h5py.File(path, "w")
        pos_ds = file.create_dataset(
            "positions", (0, TOY_ATOMS, 3), maxshape=(None, TOY_ATOMS, 3), dtype="f8"
        )
        energy_ds = file.create_dataset("energy", (0,), maxshape=(None,), dtype="f8")
        counter = iter(range(1 << 62))

        def store_h5(positions: Any, energy: float) -> None:
            i = next(counter)
            pos_ds.resize(i + 1, axis=0)
            pos_ds[i] = positions
            energy_ds.resize(i + 1, axis=0)
            energy_ds[i] = energy

        return store_h5, file.close
    raise ValueError(f"no toy store for {library!r}")


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def cpu_seconds() -> float:
    return time.process_time()
