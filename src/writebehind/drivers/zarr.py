"""Zarr v3 stores, in a local directory or in object storage, through zarr-python 3.

``writebehind.open("run.zarr")`` and ``writebehind.open("s3://bucket/prefix/run.zarr")``
store here (see ``docs/scale-out.md``). Layout in the store:

- a group of writebehind is a zarr group; a variable is a zarr array whose
  ``dimension_names`` are the netCDF backend's (``positions_entry``, ``positions_axis1``...
  for an appendable variable, ``name_axis0``... for a fixed one), so that
  ``xarray.open_zarr(target, group=..., consolidated=False)`` opens each group;
- attributes are JSON in ``zarr.json`` (``units`` as a string); their numpy dtypes are
  recorded beside them (see ``_zarr_attrs``);
- str is zarr's variable-length ``string`` type, bytes (and msgpack dict records) its
  ``variable_length_bytes`` (zarr-python's; other Zarr libraries may not read it yet);
- an appendable variable is chunked along axis 0 in about 1 MiB of whole entries (an entry
  over 1 MiB is sliced along its first axis), with zarr's default codecs and no sharding:
  sharding rewrites a whole shard for every append.

**Commit protocol.** An appendable array's shape is its committed length. Entries are
written as whole chunks (in the background, all variables at once), beyond the shape;
``commit_lengths`` waits for every chunk to be stored and only then writes each array's
``zarr.json`` with the new shape (and the length in ``writebehind_length``), one object
per array. A reader (this backend in ``'r'``, xarray, zarr) therefore sees a prefix of
written entries that only grows, never a row that was not written, and a process killed at
any moment leaves every committed entry (a kill test proves it). Shapes of different
arrays are separate objects: a kill within a commit can leave some committed and others
not. ``durable`` on a local directory also fsyncs the chunk files (before the shapes) and
the ``zarr.json`` files, and their directories; an object store's write is durable when it
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from zarr import AsyncArray, AsyncGroup
from zarr.api import asynchronous as zarr_async
from zarr.errors import ContainsGroupError

from .._bookkeeping import ATTR_DTYPES_ATTR, KIND_ATTR, LENGTH_ATTR
from .._errors import StoreInUseError
from .._paths import check_name, is_url, split_zarr_target
from ..codecs.base import Layout
from . import _zarr_io
from ._zarr_attrs import decode_attrs, encode_attrs
from ._zarr_layout import (
    as_read,
    as_stored,
    chunk_keys,
    chunk_shape,
    empty,
    fill_value,
    storage_of,
    whole_chunks,
    zarr_dtype,
)
from ._zarr_lease import LEASE_KEY, Lease
from .base import NodeRecord, StorageIODriver, node_at

__all__ = ["ZarrBackend"]

#: zarr.json of a node, relative to the node.
METADATA = "zarr.json"
#: How arrays are written: every chunk stored, even one of fill values only (zarr would
#: delete it instead, after scanning it for one), so that each write is one object put.
CONFIG: Any = {"write_empty_chunks": True}
#: Entries of the last, partial chunk of each array kept in memory (at most this many bytes
#: for all arrays together), so that the next write, which starts inside that chunk, stores
#: it whole again without reading it back from the storage.
TAIL_BYTES = 32 << 20

# zarr-python warns at every use of its variable_length_bytes type (no Zarr v3 spec yet),
# on its I/O thread too; the choice is made and documented above, so only that warning of
# that type is silenced (xarray reading such an array still warns, in the reader's code).
warnings.filterwarnings(
    "ignore", message=r"The data type \(VariableLengthBytes\(\)\)", module=r"zarr\."
)


@dataclasses.dataclass
class _Array:
    """An array of the open store: what is committed, and how far entries were written."""

    array: AsyncArray[Any]  # as stored: its shape is the committed one
    layout: Layout
    appendable: bool
    attrs: dict[str, Any]  # as zarr.json holds them (JSON values, dtype record included)
    extent: int = 0  # entries written (committed or not), along axis 0

    def shaped(self, rows: int | None = None) -> AsyncArray[Any]:
        """The array, written with CONFIG, as if ``rows`` long: writes and reads beyond the
        committed shape go to the same chunk objects, and nothing is written to zarr.json.
        """
        metadata = self.array.metadata
        if rows is not None:
            metadata = dataclasses.replace(metadata, shape=(rows, *self.array.shape[1:]))
        return AsyncArray(metadata=metadata, store_path=self.array.store_path, config=CONFIG)


class ZarrBackend(StorageIODriver):
    """The backend of Zarr v3 stores: a local directory, or ``s3://``, ``gs://``, ``az://``.

    Parameters
    ----------
    target : str or os.PathLike
        A directory (``run.zarr``) or a URL obstore knows (``s3://bucket/prefix/run.zarr``).
        A path through a ``*.zarr`` directory or prefix names a group of that hierarchy:
        ``ens.zarr/replica-0`` is ``group="replica-0"`` of ``ens.zarr``.
    access_mode : {None, 'w', 'a', 'r'}
        See :class:`~writebehind.StorageIODriver`. ``'w'`` deletes what the target holds
        (refused for a local directory that holds files but no Zarr store).
    storage_options : mapping, optional
        For a URL: obstore's configuration (``endpoint``, ``access_key_id``,
        ``region``, ``client_options={"allow_http": True}``...); what it leaves out comes
        from the environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...).
    lease_seconds : float
        A writer holds the store's lease (one writer per store) and renews it every third
        of this while open; a lease not renewed for this long is taken over by the next
        writer (see ``drivers/_zarr_lease.py``).
    group : str
        The group of the hierarchy at ``target`` that is this store (``"replica-0"``,
        ``"ens/replica-0"``; after the group the target's path names, if any): the store's
        root is that group, and its writer holds that group's lease, so that writers of
        different groups write one hierarchy at once. Creating the group creates the
        hierarchy's root group and the group's ancestors when missing. A writer of a group
        and a writer of the whole hierarchy (or of an ancestor or descendant group)
        exclude each other.

    Raises
    ------
    StoreInUseError
        At ``open`` (or the first write, in mode None), when another writer holds the
        store; at a commit, when another writer took the lease over.
    """

    #: Whether a store can be one group of a hierarchy shared with other writers.
    has_groups = True

    no_recovery_needed = (
        "a Zarr store needs no recovery: each array's shape is its committed length, "
        "written after its chunks"
    )

    def __init__(
        self,
        target: str | os.PathLike[str],
        access_mode: str | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        lease_seconds: float = 60.0,
        group: str = "",
    ):
        name = os.fsdecode(target)
        hierarchy, in_target = split_zarr_target(name) if self.has_groups else (name, "")
        #: Where the hierarchy is, and the group of it that is this store ("": the root).
        self.hierarchy = hierarchy
        self.group = _group_path(in_target, group)
        location = f"{hierarchy.rstrip('/')}/{self.group}" if self.group else hierarchy
        super().__init__(location, access_mode)
        self.storage_options = dict(storage_options or {})
        #: How long the store's lease outlives its writer (see ``_zarr_lease``).
        self.lease_seconds = lease_seconds
        self._lease: Lease | None = None
        self._lease_inside = False  # the lease is an object of the store (bucket root)
        self._store: Any = None
        self._root: AsyncGroup | None = None  # None until the store exists
        self._groups: dict[str, AsyncGroup] = {}
        self._arrays: dict[str, _Array] = {}
        self._pending = _zarr_io.PendingWrites()
        self._local = None if is_url(self._file_name) else os.path.abspath(self._file_name)
        self._unsynced: set[str] = set()  # keys written since the last durable commit
        #: Per array: where its last, partial chunk starts, and the entries written in it.
        self._tails: dict[str, tuple[int, np.ndarray[Any, Any]]] = {}
        self._tail_bytes = 0

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        if self._store is not None:
            return
        mode = self._access_mode
        if self._local is not None and os.path.isfile(self._local):
            raise NotADirectoryError(f"{self._file_name!r} is a file, not a Zarr store")
        store = _zarr_io.make_store(self._file_name, self.read_only, self.storage_options)
        exists = _zarr_io.run(store.exists(METADATA))
        if mode in ("a", "r") and not exists:
            if self.group:
                raise FileNotFoundError(f"No group {self.group!r} in {self.hierarchy!r}")
            raise FileNotFoundError(f"No Zarr store at {self._file_name!r}")
        if mode == "w":
            self._refuse_to_clear_a_foreign_directory(exists)
        self._store = store
        if (exists and mode != "r") or mode == "w":
            self._take_lease()  # before 'w' deletes anything: it may be another's store
        if mode == "w":
            self._delete_all_but_the_lease()
        self._pending = _zarr_io.PendingWrites()
        self._groups, self._arrays, self._unsynced = {}, {}, set()
        self._tails, self._tail_bytes = {}, 0
        if exists and mode != "w":
            # "r" would give the group (and every node found from it) a read-only store
            group = zarr_async.open_group(store=store, mode="r" if self.read_only else "r+")
            self._root = _zarr_io.run(group)
            self._groups[""] = self._root
        elif mode == "w":
            self._ensure_root()

    def _take_lease(self) -> None:
        store, root_key, inside = _zarr_io.lease_location(
            self.hierarchy, self.storage_options, LEASE_KEY
        )
        # the leases of groups: "<hierarchy>.leases/<group>.lease", beside the hierarchy
        prefix = root_key.removesuffix(".lease") + ".leases/"
        key = f"{prefix}{self.group}.lease" if self.group else root_key
        self._lease_inside = inside and not self.group

        async def rivals() -> list[str]:
            groups = [found async for found in store.list_prefix(prefix)]
            if not self.group:
                return groups
            return [root_key] + [
                other
                for other in groups
                if _overlap(other.removeprefix(prefix).removesuffix(".lease"), self.group)
            ]

        lease = Lease(store, key, self._file_name, self.lease_seconds, rivals)
        _zarr_io.run(lease.acquire())
        self._lease = lease

    def _check_lease(self) -> None:
        if self._lease is not None and self._lease.lost:
            raise StoreInUseError(f"{self._lease.lost}: nothing more is written")

    def _delete_all_but_the_lease(self) -> None:
        kept = LEASE_KEY if self._lease_inside else ""
        if self._local is None:
            _zarr_io.run(_delete_all_but(self._store, kept))
            return
        if not os.path.isdir(self._local):
            return
        for entry in os.scandir(self._local):  # directories too: zarr leaves them empty
            if entry.name == kept:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    def _refuse_to_clear_a_foreign_directory(self, is_zarr: bool) -> None:
        local = self._local
        if not is_zarr and local is not None and os.path.isdir(local) and os.listdir(local):
            raise FileExistsError(
                f"{self._file_name!r} holds files but no Zarr store: writebehind does not "
                "delete them; remove the directory or choose another name"
            )

    def _check_writable(self) -> None:
        if self._store is None:
            raise ValueError(f"the Zarr store {self._file_name!r} is not open")
        if self.read_only:
            raise OSError(f"{self._file_name!r} was opened read-only")

    def _ensure_root(self) -> AsyncGroup:
        """The root group, created at the first write (a read never makes a store)."""
        self._check_writable()
        if self._root is None:
            if self._lease is None:
                self._take_lease()
            if self.group:
                self._ensure_ancestors()
            # "a" creates it: "w" would delete the store's objects first, the lease among
            # them, and "w-" refuses a store holding any object
            self._root = _zarr_io.run(
                zarr_async.open_group(store=self._store, mode="a", zarr_format=3)
            )
            self._groups[""] = self._root
            self._track(METADATA)
        return self._root

    def _ensure_ancestors(self) -> None:
        """Create the hierarchy's root group and the group's ancestors that are missing
        (several writers may create one at once: they write the same object)."""
        store = _zarr_io.make_store(self.hierarchy, False, self.storage_options)
        parts = self.group.split("/")
        paths = ["/".join(parts[:n]) for n in range(len(parts))]
        _zarr_io.run(_open_groups(store, paths))
        if self._local is not None:
            hierarchy = os.path.abspath(self.hierarchy.removeprefix("file://"))
            _zarr_io.fsync_files(hierarchy, {f"{path}/{METADATA}".lstrip("/") for path in paths})

    def scan(self) -> Iterator[NodeRecord]:
        if self._root is None:
            return
        members = _zarr_io.run(_members(self._root))
        for path, node in sorted(members, key=lambda member: member[0].split("/")):
            if isinstance(node, AsyncGroup):
                self._groups[path] = node
                yield NodeRecord(path, True, decode_attrs(node.attrs))
                continue
            state = _scanned(node)
            known = self._arrays.get(path)
            if known is not None:  # written beyond its shape in this session
                state.extent = max(state.extent, known.extent)
            self._arrays[path] = state
            attrs = decode_attrs(state.attrs)
            length = state.extent if state.appendable else 0
            yield NodeRecord(path, False, attrs, state.layout, state.appendable, length)

    def sync(self, durable: bool = False) -> None:
        self._pending.wait()
        if durable:
            self._fsync()

    def commit_lengths(self, lengths: dict[str, int], durable: bool) -> None:
        # Chunks first (stored, and fsynced if durable), then the shapes: a reader or a
        # crash never finds a shape that counts a chunk not stored.
        self.sync(durable)
        self._check_lease()
        if not lengths:
            return
        commits = []
        for path in sorted(lengths):
            state = self._arrays[path]
            attrs = {**state.attrs, LENGTH_ATTR: int(lengths[path])}
            shape = (int(lengths[path]), *state.array.shape[1:])
            commits.append(self._save(path, attrs, shape))
        _zarr_io.run(_gather(commits))
        if durable:
            self._fsync()

    def _track(self, *keys: str) -> None:
        """Remember files written, for the next durable commit to fsync (local only: an
        object store's write is durable when it returns)."""
        if self._local is not None:
            self._unsynced.update(keys)

    def _fsync(self) -> None:
        if self._local is not None and self._unsynced:
            _zarr_io.fsync_files(self._local, self._unsynced)
        self._unsynced = set()

    def close(self) -> None:
        if self._store is None:
            return
        reported = self._pending.reported
        try:
            self._pending.wait()
        except BaseException:
            if not reported:  # a failed write that no commit has reported yet
                raise
        finally:
            lease, self._lease = self._lease, None
            if lease is not None:
                _zarr_io.run(lease.release())
            self._store, self._root = None, None
            self._groups, self._arrays = {}, {}
            self._tails, self._tail_bytes = {}, 0

    def stored_bytes(self) -> int:
        """Bytes of every object (file) of the store."""
        if self._store is None:
            return 0
        return int(_zarr_io.run(self._store.getsize_prefix("")))

    def chunk_entries(self, layout: Layout) -> int:
        return chunk_shape(layout, appendable=True)[0]

    # -- structure ---------------------------------------------------------------------
    def create_group(self, path: str) -> None:
        self._check_writable()
        parent = self._group(path.rpartition("/")[0])
        name = path.rpartition("/")[2]
        self._groups[path] = _zarr_io.run(parent.create_group(name))
        self._track(f"{path}/{METADATA}")

    def create_variable(self, path: str, layout: Layout, appendable: bool) -> None:
        self._check_writable()
        parent_path, _, name = path.rpartition("/")
        group = self._group(parent_path)
        first = int(appendable)
        axes = [f"{name}_entry"] if appendable else []
        axes += [f"{name}_axis{axis}" for axis in range(first, len(layout.shape) + first)]
        shape = ((0,) if appendable else ()) + tuple(layout.shape)
        attrs: dict[str, Any] = {KIND_ATTR: "appendable" if appendable else "fixed"}
        if appendable:
            attrs[LENGTH_ATTR] = 0
        array = _zarr_io.run(
            group.create_array(
                name,
                shape=shape,
                chunks=chunk_shape(layout, appendable),
                dtype=zarr_dtype(layout),
                fill_value=fill_value(layout),
                dimension_names=self._new_dimension_names(parent_path, axes),
                attributes=attrs,
                config=CONFIG,
            )
        )
        self._arrays[path] = _Array(array, layout, appendable, dict(array.attrs))
        self._track(f"{path}/{METADATA}")

    def _new_dimension_names(self, group_path: str, names: list[str]) -> list[str]:
        """``names``, each made unique in the group as the netCDF backend does (``_1``...):
        xarray takes a dimension of one name for one length across the group."""
        prefix = f"{group_path}/" if group_path else ""
        taken: set[str] = set()
        for path, state in self._arrays.items():
            if path.rpartition("/")[0] == group_path:
                taken.add(path.rpartition("/")[2])
                taken.update(state.array.metadata.dimension_names or ())
        taken.update(p.rpartition("/")[2] for p in self._groups if p.startswith(prefix) and p)
        out = []
        for name in names:
            candidate, n = name, 0
            while candidate in taken:
                n += 1
                candidate = f"{name}_{n}"
            taken.add(candidate)
            out.append(candidate)
        return out

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        if path in self._arrays:
            state = self._arrays[path]
            merged = _with_attrs(state.attrs, attrs)
            _zarr_io.run(self._save(path, merged, state.array.shape))
            return
        group = self._group(path) if path else self._ensure_root()
        merged = _with_attrs(dict(group.attrs), attrs)
        self._groups[path] = _zarr_io.run(group.update_attributes(merged))
        self._track(f"{path}/{METADATA}" if path else METADATA)

    async def _save(self, path: str, attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
        """Write the zarr.json of array ``path``: its shape and attributes, one object."""
        state = self._arrays[path]
        metadata = dataclasses.replace(state.array.metadata, attributes=attrs)
        array = AsyncArray(metadata=metadata, store_path=state.array.store_path)
        await array.resize(shape, delete_outside_chunks=False)
        state.array, state.attrs = array, attrs
        self._track(f"{path}/{METADATA}")

    def get_attrs(self, path: str) -> dict[str, Any]:
        if path in self._arrays:
            return decode_attrs(self._arrays[path].attrs)
        if not path and self._root is None:
            return {}
        return decode_attrs(self._group(path).attrs)

    def _group(self, path: str) -> AsyncGroup:
        if not path:
            return self._ensure_root() if self._root is None else self._root
        return node_at(self._groups, path, "group", self._file_name)

    def _array(self, path: str) -> _Array:
        return node_at(self._arrays, path, "variable", self._file_name)

    # -- data --------------------------------------------------------------------------
    def write_entries(self, path: str, start: int, entries: Any) -> None:
        state = self._array(path)
        self._check_writable()
        self._check_lease()
        count = len(entries)
        if count == 0:
            return
        end = start + count
        state.extent = max(state.extent, end)
        target = state.shaped(state.extent)
        keys = chunk_keys(state.array, start, end)
        self._track(*(f"{path}/{key}" for key in keys))
        layout = state.layout
        pieces = None
        if isinstance(entries, np.ndarray) and entries.dtype == layout.dtype:
            pieces = self._whole_chunks(path, state, start, entries)
        if pieces is not None:
            # Whole chunks (the engine stages them): encoded here, at once on the I/O
            # loop's threads, straight from the engine's buffer; only the encoded bytes
            # outlive this call (the engine reuses its buffer once it returns).
            encoded = _zarr_io.run(_zarr_io.encode_chunks(target, pieces))
            nbytes = sum(len(piece) for _, piece in encoded)
            write = _zarr_io.store_chunks(encoded)
        else:  # into a chunk holding entries not kept here: zarr reads and merges it
            data = as_stored(entries, layout)  # a copy: the engine reuses its buffer
            nbytes = data.nbytes
            write = target.setitem(slice(start, end), data)  # runs on the I/O loop
            rows = state.array.metadata.chunks[0] if state.array.metadata.chunks else 0
            if rows and layout.storage == "numeric" and end % rows and end - end % rows >= start:
                # the last chunk starts in this write: the next one need not read it back
                self._keep_tail(path, end - end % rows, data[-(end % rows) :])
        self._pending.add([(path, key) for key in keys], nbytes, write)

    def _whole_chunks(
        self, path: str, state: _Array, start: int, entries: np.ndarray[Any, Any]
    ) -> list[tuple[tuple[int, ...], np.ndarray[Any, Any]]] | None:
        """``entries`` (from ``start``) as whole chunks to store, the entries already in
        the first chunk (kept from the last write) included; None when they are not kept.
        Keeps the entries of the last chunk if it is partial."""
        chunks = state.array.metadata.chunks
        fill = state.array.metadata.fill_value
        rows = chunks[0] if chunks else 0
        tail = self._forget_tail(path)
        lead: list[tuple[tuple[int, ...], np.ndarray[Any, Any]]] = []
        if rows and start % rows:
            if tail is None or tail[0] + len(tail[1]) != start:
                return None
            head = np.concatenate([tail[1], entries[: rows - len(tail[1])]])
            found = whole_chunks(chunks, tail[0], head, fill)
            if found is None:
                return None
            lead, entries, start = found, entries[len(head) - len(tail[1]) :], tail[0] + len(head)
            if not len(entries):  # all in the first chunk
                self._keep_tail(path, tail[0], head)
                return lead
        pieces = whole_chunks(chunks, start, entries, fill)
        if pieces is None:
            return None
        partial = len(entries) % rows
        if partial:
            self._keep_tail(path, start + len(entries) - partial, entries[-partial:].copy())
        return lead + pieces

    def _forget_tail(self, path: str) -> tuple[int, np.ndarray[Any, Any]] | None:
        tail = self._tails.pop(path, None)
        if tail is not None:
            self._tail_bytes -= tail[1].nbytes
        return tail

    def _keep_tail(self, path: str, start: int, entries: np.ndarray[Any, Any]) -> None:
        if len(entries) and self._tail_bytes + entries.nbytes <= TAIL_BYTES:
            self._tails[path] = (start, entries)
            self._tail_bytes += entries.nbytes

    def write_value(self, path: str, value: Any) -> None:
        state = self._array(path)
        self._check_writable()
        keys = chunk_keys(state.array, 0, 1)
        self._track(*(f"{path}/{key}" for key in keys))
        if state.layout.storage == "numeric":
            data = np.array(value, dtype=state.layout.dtype, copy=True)
            write = state.shaped().setitem(..., data)
            nbytes = data.nbytes
        else:  # not through setitem: _zarr_io says why
            item = str(value) if state.layout.storage == "string" else bytes(value)
            write = _zarr_io.set_object_value(state.array, item)
            nbytes = len(item)
        self._pending.add([(path, key) for key in keys], nbytes, write)

    def read_entries(self, path: str, start: int, stop: int, step: int = 1) -> Any:
        state = self._array(path)
        self._pending.wait()  # read-your-writes: the chunks written so far
        rows = range(start, stop, step)
        if len(rows) == 0:
            return empty((0, *state.layout.shape), state.layout)
        low, high = min(rows[0], rows[-1]), max(rows[0], rows[-1]) + 1
        source = state.shaped(max(state.extent, high))
        block = _zarr_io.run(source.getitem(slice(low, high)))
        picked = np.asarray(block)[np.asarray(rows, dtype=np.intp) - low]
        return as_read(picked, state.layout)

    def read_value(self, path: str) -> Any:
        state = self._array(path)
        self._pending.wait()
        if state.layout.storage == "numeric":
            return np.asarray(_zarr_io.run(state.array.getitem(...)))
        item = _zarr_io.run(_zarr_io.get_object_value(state.array))
        return str(item) if state.layout.storage == "string" else bytes(item)


async def _members(root: AsyncGroup) -> list[tuple[str, Any]]:
    return [member async for member in root.members(max_depth=None)]


async def _open_groups(store: Any, paths: list[str]) -> None:
    """Open, or create, the group at each of ``paths`` of ``store``, in order."""
    for path in paths:
        # ContainsGroupError: another writer created it since open_group looked
        with contextlib.suppress(ContainsGroupError):
            await zarr_async.open_group(store=store, path=path, mode="a", zarr_format=3)


def _group_path(*parts: str) -> str:
    """The group path ``parts`` make together, each name checked (netCDF's rule)."""
    if any(not isinstance(part, str) for part in parts):
        raise TypeError("group must be a str")
    names = [name for part in parts for name in part.strip("/").split("/") if part.strip("/")]
    return "/".join(check_name(name) for name in names)


def _overlap(a: str, b: str) -> bool:
    """Whether group paths ``a`` and ``b`` share nodes (one is the other or inside it)."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


async def _delete_all_but(store: Any, kept: str) -> None:
    """Delete every object of ``store`` but ``kept`` (what 'w' does to an object store)."""
    keys = [key async for key in store.list() if key != kept]
    await asyncio.gather(*(store.delete(key) for key in keys))


async def _gather(coros: list[Any]) -> None:
    await asyncio.gather(*coros)


def _scanned(array: AsyncArray[Any]) -> _Array:
    attrs = dict(array.attrs)
    storage, dtype = storage_of(array)
    appendable = attrs.get(KIND_ATTR) == "appendable" and array.ndim >= 1
    entry_shape = tuple(array.shape[1:] if appendable else array.shape)
    state = _Array(array, Layout(storage, dtype, entry_shape), appendable, attrs)
    state.extent = array.shape[0] if appendable else 0
    return state


def _with_attrs(stored: dict[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    dtypes = dict(stored.get(ATTR_DTYPES_ATTR) or {})
    merged = {**stored, **encode_attrs(attrs, dtypes)}
    merged[ATTR_DTYPES_ATTR] = dtypes
    return merged
