"""The Zarr backend's I/O: where a target's bytes live, the loop that moves them, fsync.

zarr-python 3 is asynchronous underneath; the backend is synchronous (called on the
engine's writer thread). It runs zarr's coroutines on one event loop in a daemon thread of
its own, shared by every Zarr backend of the process, so that the chunk writes of a flush
run at once: against object storage, a flush of ten variables costs about one round trip,
not ten.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np
from zarr import AsyncArray
from zarr.abc.store import Store
from zarr.core.array_spec import ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import LocalStore, ObjectStore

from .._paths import is_url

__all__ = [
    "PendingWrites",
    "encode_chunks",
    "fsync_files",
    "get_object_value",
    "lease_location",
    "make_store",
    "run",
    "set_object_value",
    "store_chunks",
    "submit",
]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="writebehind-zarr", daemon=True).start()
            _loop = loop
        return _loop


def _forget_loop_in_child() -> None:
    global _loop, _lock
    _loop = None  # its thread was not forked: a child starts its own
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_loop_in_child)


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Run ``coro`` on the I/O loop; its future."""
    return asyncio.run_coroutine_threadsafe(coro, _event_loop())


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the I/O loop and wait for its result."""
    return submit(coro).result()


class PendingWrites:
    """Writes submitted and not yet waited for, ordered per key, bounded in bytes.

    Writes of one chunk (``key``) run in the order submitted (a partial chunk, then the
    whole one); writes of different chunks run at once. ``wait`` raises the first error of
    any write, and every later ``wait`` raises it too: a length must never be committed
    over a chunk that did not reach the storage.
    """

    #: Bytes submitted and not stored past which ``add`` waits for the oldest writes. The
    #: engine counts an entry as written once the backend returns, so these bytes are held
    #: beyond its ``max_pending_bytes``: a few chunks' worth keeps object puts overlapped
    #: (16 of about 1 MiB at once) without holding much more memory than the engine says.
    MAX_PENDING_BYTES = 16 << 20

    def __init__(self) -> None:
        self._futures: list[tuple[Future[Any], int]] = []
        self._last: dict[Any, Future[Any]] = {}
        self._nbytes = 0
        self.error: BaseException | None = None
        self.reported = False  # whether ``wait`` raised ``error`` already

    def add(self, keys: list[Any], nbytes: int, write: Coroutine[Any, Any, Any]) -> None:
        before = [self._last[key] for key in keys if key in self._last]
        future = submit(_after(before, write))
        for key in keys:
            self._last[key] = future
        self._futures.append((future, nbytes))
        self._nbytes += nbytes
        while self._nbytes > self.MAX_PENDING_BYTES and len(self._futures) > 1:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, nbytes = self._futures.pop(0)
        self._nbytes -= nbytes
        try:
            future.result()
        except BaseException as exc:
            if self.error is None:
                self.error = exc

    def wait(self) -> None:
        """Wait for every write; raise the first that failed (now or before)."""
        while self._futures:
            self._wait_oldest()
        self._last.clear()
        if self.error is not None:
            self.reported = True
            raise self.error


async def _after(before: list[Future[Any]], write: Coroutine[Any, Any, T]) -> T:
    for future in before:
        # its own wait reports its error; this write still runs after it
        with contextlib.suppress(BaseException):
            await asyncio.wrap_future(future)
    return await write


async def encode_chunks(
    array: AsyncArray[Any], chunks: list[tuple[tuple[int, ...], np.ndarray[Any, Any]]]
) -> list[tuple[Any, Any]]:
    """Each of ``chunks`` (its coordinates in the chunk grid, and its whole data, of the
    array's chunk shape) encoded by the array's codecs, in parallel: (store path, bytes).

    The bytes never share memory with the data given (copied when a codec passed them
    through): the caller may reuse its buffers once this returns.
    """
    metadata = array.metadata
    prototype = default_buffer_prototype()
    spec = ArraySpec(
        shape=metadata.chunks,
        dtype=metadata.dtype,
        fill_value=metadata.fill_value,
        config=array.config,
        prototype=prototype,
    )
    batch = [(prototype.nd_buffer.from_numpy_array(data), spec) for _, data in chunks]
    encoded = list(await array.codec_pipeline.encode(batch))
    out = []
    for (coords, data), piece in zip(chunks, encoded, strict=True):
        if piece is None:  # no codec drops a chunk that is not empty; to be sure
            raise RuntimeError(f"zarr encoded no chunk {coords} of {array.path!r}")
        raw = piece.as_numpy_array()
        if np.may_share_memory(raw, data):
            piece = prototype.buffer.from_bytes(raw.tobytes())
        out.append((array.store_path / metadata.encode_chunk_key(coords), piece))
    return out


async def store_chunks(encoded: list[tuple[Any, Any]]) -> None:
    """Store each encoded chunk (``encode_chunks``'s output) at once."""
    await asyncio.gather(*(path.set(piece) for path, piece in encoded))


# A value of a 0-d array of str or bytes is stored and read here, as its one chunk, because
# zarr's own setitem and getitem of such an array differ between zarr versions and each
# breaks a value: zarr 3.4 nests the 0-d array it was given inside its one element (bytes:
# numcodecs raises "Expected bytes, got numpy.ndarray"), zarr 3.1 reads the value back as a
# fixed-width numpy string (trailing NUL bytes or characters dropped). The chunk is the
# whole value, encoded by the array's own codecs: the object is the one zarr writes, so a
# store written on either version reads on the other.
def _only_chunk(array: AsyncArray[Any]) -> tuple[Any, ArraySpec]:
    metadata = array.metadata
    spec = ArraySpec(
        shape=(),
        dtype=metadata.dtype,
        fill_value=metadata.fill_value,
        config=array.config,
        prototype=default_buffer_prototype(),
    )
    return array.store_path / metadata.encode_chunk_key(()), spec


async def set_object_value(array: AsyncArray[Any], value: str | bytes) -> None:
    """Store ``value`` as the value of ``array``, a 0-d array of str or bytes."""
    key, spec = _only_chunk(array)
    data = np.empty((), dtype=spec.dtype.to_native_dtype())
    data[()] = value  # a str or bytes object, never an array (which zarr 3.4 would nest)
    (encoded,) = await array.codec_pipeline.encode(
        [(spec.prototype.nd_buffer.from_numpy_array(data), spec)]
    )
    if encoded is None:  # no codec drops a chunk that is not empty; to be sure
        raise RuntimeError(f"zarr encoded no chunk for the value of {array.path!r}")
    await key.set(encoded)


async def get_object_value(array: AsyncArray[Any]) -> Any:
    """The value of ``array``, a 0-d array of str or bytes (its fill value if unwritten)."""
    key, spec = _only_chunk(array)
    encoded = await key.get(prototype=spec.prototype)
    if encoded is None:
        return array.metadata.fill_value
    (decoded,) = await array.codec_pipeline.decode([(encoded, spec)])
    assert decoded is not None
    return decoded.as_numpy_array().reshape(-1)[0]


def make_store(target: str, read_only: bool, options: Mapping[str, Any] | None) -> Store:
    """The zarr store of ``target``: a local directory, or object storage through obstore.

    ``options`` go to ``obstore.store.from_url`` (its ``config`` keys, such as
    ``endpoint`` or ``access_key_id``; ``client_options`` and ``retry_config`` as they
    are); what they leave out comes from the environment (``AWS_ENDPOINT_URL``...).
    """
    if not is_url(target):
        path = target.removeprefix("file://")
        return LocalStore(os.path.abspath(path), read_only=read_only)
    import obstore.store

    config: Any = dict(options or {})
    names = ("client_options", "retry_config")
    extra = {name: config.pop(name) for name in names if name in config}
    objects = obstore.store.from_url(target, config=config or None, **extra)
    return ObjectStore(objects, read_only=read_only)


def lease_location(
    target: str, options: Mapping[str, Any] | None, inside: str
) -> tuple[Store, str, bool]:
    """Where the lease of the store at ``target`` lives: a store, a key in it, and whether
    that is inside the store (only at the root of a bucket: nothing is beside it)."""
    if not is_url(target):
        path = os.path.abspath(target.removeprefix("file://"))
        return LocalStore(os.path.dirname(path)), os.path.basename(path) + ".lease", False
    head, _, name = target.rstrip("/").rpartition("/")
    if not name or head.endswith(":/"):  # s3://bucket: the store is the whole bucket
        return make_store(target, False, options), inside, True
    return make_store(head, False, options), name + ".lease", False


def fsync_files(root: str, keys: set[str]) -> None:
    """fsync each file ``keys`` names under ``root``, then each directory holding one (up to
    and including the directory holding ``root``), so that the names survive too."""
    directories: set[str] = set()
    for key in sorted(keys):
        path = os.path.join(root, key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # a chunk zarr did not store (nothing in it)
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        directory = os.path.dirname(path)
        while directory not in directories and len(directory) >= len(root):
            directories.add(directory)
            directory = os.path.dirname(directory)
    directories.add(os.path.dirname(root))
    for directory in sorted(directories, key=len, reverse=True):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
