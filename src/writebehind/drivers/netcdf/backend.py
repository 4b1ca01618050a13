"""NetCDF-4 files through netCDF4-python.

Layout in the file:

- a group of writebehind is a netCDF group;
- an appendable variable ``positions`` with entries of shape ``(1000, 3)`` grows along its
  own unlimited dimension ``positions_entry``; its entry axes are ``positions_axis1`` and
  ``positions_axis2``; it is chunked so that one chunk holds 48 KiB of whole entries plus
  two (at most 8192 entries and 1 MiB; an entry over 1 MiB is sliced), not netCDF's default
  of one entry per chunk;
- a fixed variable has dimensions ``name_axis0``, ``name_axis1``...;
- str is a netCDF ``string``, bytes (and msgpack dict records) the variable-length type
  ``writebehind_bytes`` (vlen of ubyte) defined in the root group.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import stat
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import netCDF4
import numpy as np

from ..._bookkeeping import BYTES_TYPE_NAME, FILE_ID_ATTR, KIND_ATTR, LENGTH_ATTR
from ..._errors import DamagedDataError, ReadOnlyError
from ..._fork import register_library
from ...codecs.base import Layout
from ..base import NodeRecord, StorageIODriver
from .descriptors import OpenFiles
from .journal import IndexJournal
from .metajournal import MetadataJournal
from .recovery import (
    RecoveryReport,
    create_atomically,
    drop_rollback_copy,
    fsync_directory,
    keep_rollback_copy,
    recover,
)
from .shapes import Shape, UnlimitedDimensions, variable_shapes
from .sidefiles import FileIdentity

__all__ = ["LIBRARY_LOCK", "NetCDFBackend"]

#: A chunk holds this much of whole entries (plus two, up to CHUNK_SLICE_BYTES): HDF5
#: allocates a chunk whole, so a variable's first chunk is what a short run pays for it (see
#: chunk_shape). The engine stages by the same rule (it asks chunk_entries).
CHUNK_TARGET_BYTES = 48 << 10
CHUNK_MAX_ENTRIES = 8192
#: After a sync that follows this many bytes of entries, the chunk indexes they grew are read
#: for the metadata journal (``MetadataJournal.keep_up``): a structural flush after a long
#: run then reads only the last of them (about 1 ms a 64 MiB, once).
KEEP_UP_BYTES = 64 << 20
#: An entry larger than this is stored in slices along its first axis.
CHUNK_SLICE_BYTES = 1 << 20
_OBJECT = np.dtype(object)
#: Longest dimension name made (NC_MAX_NAME is 256 bytes; room is left for a "_n" suffix).
DIMENSION_NAME_BYTES = 248
#: netCDF-C and the HDF5 under it are not thread-safe (the wheels' HDF5 is built without
#: its thread-safe option) and netCDF4-python releases the GIL inside them, so two stores'
#: writer threads in the library at once can corrupt it and crash the process.
LIBRARY_LOCK = threading.RLock()
#: The files netCDF has open for this process's drivers: a forked child writes none of them
#: (and a fork waits for the writers to leave the library: see writebehind._fork).
_OPEN_FILES = OpenFiles()
register_library(LIBRARY_LOCK, _OPEN_FILES.after_fork_in_child)


class NetCDFBackend(StorageIODriver):
    """The backend of NetCDF-4 (HDF5) files.

    ``StorageInterface(NetCDFBackend("run.nc"))`` is a store without openmmtools' driver
    API; :class:`~writebehind.NetCDFIODriver` holds one of these and adds that API.

    Parameters
    ----------
    file_name : str, bytes or os.PathLike
        Path of the ``.nc`` file (a link is resolved once, at open).
    access_mode : {None, 'w', 'a', 'r'}
        See :class:`~writebehind.StorageIODriver`.
    checksums : bool
        Give the numeric appendable variables this driver creates HDF5's Fletcher32
        checksum per chunk: a read of damaged bytes then raises
        :class:`~writebehind.DamagedDataError` instead of returning them. Off by default
        (it costs the writer about half its throughput).
    """

    library_lock = LIBRARY_LOCK
    no_recovery_needed = ""  # a killed writer can leave a file netCDF-C cannot open

    @classmethod
    def recover(cls, target: str, *, force: bool = False, write: bool = True) -> RecoveryReport:
        """Recover the netCDF-4 file ``target`` (:func:`~writebehind.drivers.netcdf.recover`)."""
        return recover(target, force=force, write=write)

    def __init__(
        self,
        file_name: str | bytes | os.PathLike[Any],
        access_mode: str | None = None,
        *,
        checksums: bool = False,
    ):
        super().__init__(file_name, access_mode)
        #: Whether the numeric appendable variables this driver creates carry HDF5's
        #: Fletcher32 checksum per chunk, verified on every read (``_damaged_entries``).
        #: Off by default: HDF5's filter path halves the writer's throughput and slows
        #: reads (docs/performance.md, "What the checksums cost").
        self.checksums = checksums
        self._dataset: netCDF4.Dataset | None = None
        self._nodes: dict[str, Any] = {}  # path -> netCDF4 Group or Variable
        # Scanned variables whose chunk cache is set at their first read or write, not at
        # open: a file of thousands of variables opens without touching each (see scan).
        self._cache_unset: set[str] = set()
        self._bytes_type: Any = None
        #: What crash recovery found when the file was opened (None: not opened, or new).
        self.recovery: RecoveryReport | None = None
        self._directory_synced = True  # False from creating the file to its first fsync
        # The file on disk is as the last sync (or a clean open) left it, and holds data a
        # rollback copy would protect; the copy is taken before the first change of structure
        # after a sync (see recovery.keep_rollback_copy) and dropped by the next sync.
        self._on_disk_consistent = False
        self._rollback_kept = False
        self._index_journal: IndexJournal | None = None  # see journal: chunk-index undo
        self._entries_written = False  # since the last sync: only then can an index change
        self._bytes_unread = 0  # of entries whose index nodes the metadata journal has not read
        self._identity: FileIdentity | None = None  # of the open file, for its side files
        # The pre-images of the metadata, kept before the first change of structure after a
        # sync in place of the rollback copy when they are small enough (see metajournal).
        self._metadata_journal: MetadataJournal | None = None
        self._metadata_saved = False
        #: The file's path with every link resolved, once, at open: the data lands in a
        #: link's target and the link stays a link. Side files sit beside the target.
        self._path = self._file_name

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        if self._dataset is not None:
            return
        self._path = resolve_file_path(self._file_name)
        _close_left_open(self._path)
        mode = self._access_mode
        exists = os.path.exists(self._path)
        if mode in ("a", "r") and not exists:
            raise FileNotFoundError(f"No such NetCDF file: {self._file_name!r}")
        if mode is None and not exists:
            return  # created on the first write: a read never makes an empty file
        if mode != "w":  # a file left by a crash (see recovery); reading never writes
            _OPEN_FILES.check_not_inherited(self._path)  # a fork's stale copy of it
            self.recovery = recover(self._path, write=mode != "r")
        self._open_dataset("w" if mode == "w" else ("r" if mode == "r" else "a"))

    def _open_dataset(self, mode: Any) -> netCDF4.Dataset:
        try:
            if mode == "w":  # valid under its name from the start: see create_atomically
                dataset = create_atomically(self._path)
            else:
                dataset = netCDF4.Dataset(self._path, mode, format="NETCDF4")
        except OSError as exc:
            if mode != "w" and os.path.exists(self._path):
                raise OSError(
                    exc.errno,
                    f"{self._file_name!r} is not a NetCDF-4 file writebehind can open "
                    f"({exc.strerror or exc})",
                ) from exc
            raise
        _OPEN_FILES.add(dataset, self._path)
        if mode == "w":
            self._directory_synced = False
        self._on_disk_consistent = True
        if mode != "r":
            file_id = str(dataset.__dict__.get(FILE_ID_ATTR, ""))
            with open(self._path, "rb") as file:
                self._identity = FileIdentity.of(file.fileno(), file_id)
            self._index_journal = IndexJournal(
                self._path, self._identity, self._appendable_variables
            )
            self._metadata_journal = MetadataJournal(self._path, self._identity)
        dataset.set_auto_maskandscale(False)
        dataset.set_always_mask(False)
        self._dataset = dataset
        if dataset.data_model != "NETCDF4":  # netCDF-3 (AMBER's) or NETCDF4_CLASSIC
            self.structure_frozen = (
                f"{self._file_name!r} is a {dataset.data_model} file: writebehind appends to "
                "and writes its variables and metadata, but creates groups and variables "
                "only in NETCDF4 files"
            )
        self._nodes = {"": dataset}
        self._cache_unset = set()
        self._bytes_type = dataset.vltypes.get(BYTES_TYPE_NAME)
        return dataset

    def _appendable_variables(self) -> dict[str, int]:
        """Every variable of the open file that grows along an unlimited first dimension
        (path -> number of dimensions), for the chunk-index journal."""
        found: dict[str, int] = {}
        groups: list[tuple[str, Any]] = [("", self._dataset)] if self._dataset else []
        unlimited = UnlimitedDimensions()
        while groups:
            prefix, group = groups.pop()
            groups.extend((f"{prefix}{name}/", child) for name, child in group.groups.items())
            for name, variable in group.variables.items():
                dims = variable.get_dims()
                if dims and unlimited(dims[0]):
                    found[prefix + name] = variable.ndim
        return found

    @property
    def is_open(self) -> bool:
        return self._dataset is not None and self._dataset.isopen()

    def _ds(self) -> netCDF4.Dataset:
        """The open dataset, creating the file now if it was deferred."""
        if self._dataset is None:
            if self._access_mode == "r":
                raise FileNotFoundError(f"No such NetCDF file: {self._file_name!r}")
            self._open_dataset("w")
        assert self._dataset is not None
        return self._dataset

    def scan(self) -> Iterator[NodeRecord]:
        if self._dataset is None:
            return
        nodes = list(self._walk(self._dataset, ""))
        variables = [(path, node) for path, node in nodes if isinstance(node, netCDF4.Variable)]
        if self._dataset.data_model.startswith("NETCDF4"):
            shapes = iter(variable_shapes(self._path, variables))
        else:  # netCDF-3 (AMBER's): one unlimited dimension, whose length is the header's
            shapes = iter([_netcdf3_shape(variable) for _, variable in variables])
        for path, node in nodes:
            self._nodes[path] = node
            if isinstance(node, netCDF4.Variable):
                yield self._variable_record(path, node, next(shapes))
            else:
                yield NodeRecord(path, True, _attrs(node))

    def _walk(self, group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        """Every variable and group under ``group``, parents first (variables, then groups)."""
        for name, variable in group.variables.items():
            yield f"{prefix}{name}", variable
        for name, child in group.groups.items():
            yield f"{prefix}{name}", child
            yield from self._walk(child, f"{prefix}{name}/")

    def _variable_record(self, path: str, variable: Any, shape: Shape) -> NodeRecord:
        variable.set_auto_maskandscale(False)
        variable.set_always_mask(False)
        attrs = _attrs(variable)
        # A fixed variable may sit on an unlimited dimension (netCDF makes one of length 0
        # so); an appendable one needs it. The core reports a kind the dimensions contradict.
        appendable = shape.grows and str(attrs.get(KIND_ATTR)) != "fixed"
        lengths = shape.lengths
        entry_shape = lengths[1:] if appendable else lengths
        layout = Layout(_storage_of(variable), _dtype_of(variable), entry_shape)
        if appendable and layout.storage == "numeric":
            self._cache_unset.add(path)  # see _cache_before_use
        length = lengths[0] if appendable else 0
        return NodeRecord(path, False, attrs, layout, appendable, length)

    def _cache_before_use(self, path: str, variable: Any) -> None:
        """Give a scanned variable its small chunk cache before its first read or write."""
        self._cache_unset.discard(path)
        chunks = variable.chunking()
        if isinstance(chunks, list):  # "contiguous", or None in a netCDF-3 file (AMBER's)
            _small_chunk_cache(variable, tuple(chunks), variable.dtype.itemsize)

    def chunk_entries(self, layout: Layout) -> int:
        return chunk_shape(layout)[0]

    def sync(self, durable: bool = False) -> None:
        self._sync_file(durable)

    def _sync_file(self, durable: bool) -> None:
        if self._dataset is None:
            return
        # A flush that changes the structure is guarded by the metadata journal (or the
        # rollback copy); any other by an undo journal of the chunk-index nodes it may
        # rewrite in place.
        guarded = self._rollback_kept or self._metadata_saved
        journal = None if guarded or not self._entries_written else self._index_journal
        self._entries_written = False
        if journal is not None:
            journal.before_sync(durable)
        self._dataset.sync()
        if journal is not None:
            journal.after_sync(durable)
        if durable:
            _fsync_path(self._path)
            if not self._directory_synced:  # a new file's name survives a power loss too
                fsync_directory(os.path.dirname(self._path))
                self._directory_synced = True
        if self._metadata_journal is not None:  # after the fsync: the file is moved on
            self._metadata_journal.void(durable)
            self._metadata_saved = False
            if self._bytes_unread >= KEEP_UP_BYTES:
                self._bytes_unread = 0
                self._metadata_journal.keep_up()
        self._on_disk_consistent = True
        if self._rollback_kept:
            drop_rollback_copy(self._path)
            self._rollback_kept = False

    def close(self) -> None:
        dataset, self._dataset = self._dataset, None
        self._nodes = {}
        self._cache_unset = set()
        if dataset is not None and dataset.isopen():
            try:
                dataset.close()
            except RuntimeError:
                _LEFT_OPEN[self._path] = dataset
                raise
        if dataset is not None:
            _OPEN_FILES.discard(dataset)
        if self._rollback_kept:  # closing flushed the change the copy guarded
            drop_rollback_copy(self._path)
            self._rollback_kept = False
        if self._index_journal is not None:
            self._index_journal.close()
        if self._metadata_journal is not None:  # closing flushed the change it guarded
            self._metadata_journal.close()
            self._metadata_saved = False

    # -- structure -------------------------------------------------------------------
    def _node(self, path: str) -> Any:
        try:
            return self._nodes[path]
        except KeyError:
            if not path:
                return self._ds()
            raise KeyError(f"No group or variable at {path!r}") from None

    def _before_structure_change(self) -> None:
        """Keep the metadata's pre-images (or, if too large, a rollback copy of the file)
        before the first structural change since the last sync: a kill in the flush that
        writes it could leave the file unreadable."""
        guarded = self._rollback_kept or self._metadata_saved
        if self._on_disk_consistent and not guarded and self._dataset is not None:
            # The journal (or copy) must survive a power loss only if the file holds entries
            # a durable flush acknowledged: not a file this driver created and has not
            # durably flushed yet (its directory is then not synced either). There, the
            # fsyncs would be most of the cost of a short run.
            durable = self._directory_synced
            if self._entries_written:
                # Entries written since the sync may have changed chunk indexes in HDF5's
                # cache (a B-tree node split: a node rewritten in place, pointing to one
                # not written yet), and finding the raw data below flushes that cache
                # (closing HDF5's second file identifier flushes the shared file) with no
                # journal in force: the torture test lost every entry of a variable to a
                # kill there. Sync first, under the chunk-index journal; the pre-images are
                # then that completed sync's.
                self._sync_file(durable)
            metadata = self._metadata_journal
            if metadata is not None and metadata.save(durable):
                self._metadata_saved = True
            else:  # too much metadata to journal, or HDF5 cannot say where the raw data is
                assert self._identity is not None  # set when the file was opened to write
                keep_rollback_copy(self._path, durable, self._identity)
                self._rollback_kept = True
            if self._index_journal is not None:  # the copy guards this flush instead
                self._index_journal.mark_stale()

    def create_group(self, path: str) -> None:
        self._before_structure_change()
        parent, _, name = path.rpartition("/")
        parent_group = self._ds() if not parent else self._node(parent)
        self._nodes[path] = parent_group.createGroup(name)

    def create_variable(self, path: str, layout: Layout, appendable: bool) -> None:
        self._before_structure_change()
        parent, _, name = path.rpartition("/")
        group = self._ds() if not parent else self._node(parent)
        dims: list[str] = []
        if appendable:
            dims.append(_new_dimension(group, f"{name}_entry", None))
        first_axis = 1 if appendable else 0
        for axis, size in enumerate(layout.shape, start=first_axis):
            # A dimension of length 0 is unlimited in netCDF; entries of such a shape hold
            # no data and are rebuilt from the shape on read.
            dims.append(_new_dimension(group, f"{name}_axis{axis}", size))
        chunks = chunk_shape(layout) if appendable else None
        variable = group.createVariable(
            name,
            self._datatype(layout),
            tuple(dims),
            chunksizes=chunks,
            fill_value=False,
            # a chunk's bytes are checked on read: damage is an error, never wrong values
            fletcher32=self.checksums and chunks is not None and layout.storage == "numeric",
        )
        variable.set_auto_maskandscale(False)
        variable.set_always_mask(False)
        if chunks is not None and layout.storage == "numeric":
            _small_chunk_cache(variable, chunks, layout.dtype.itemsize)
        if appendable:  # no row is committed before the first flush says so
            variable.setncattr(LENGTH_ATTR, np.int64(0))
        self._nodes[path] = variable

    def _datatype(self, layout: Layout) -> Any:
        if layout.storage == "string":
            return str
        if layout.storage == "bytes":
            if self._bytes_type is None:
                self._bytes_type = self._ds().createVLType(np.uint8, BYTES_TYPE_NAME)
            return self._bytes_type
        return layout.dtype

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        node = self._node(path)
        # Rewriting the committed length keeps the object header's layout; anything else
        # can grow the header into a new continuation chunk, written after the header.
        if any(name != LENGTH_ATTR or name not in node.ncattrs() for name in attrs):
            self._before_structure_change()
        for name, value in attrs.items():
            node.setncattr(name, value)

    def get_attrs(self, path: str) -> dict[str, Any]:
        return _attrs(self._node(path))

    def root_attrs(self) -> dict[str, Any]:
        return {} if self._dataset is None else _attrs(self._dataset)  # None: created later

    # -- netCDF objects, for openmmtools' driver API (NetCDFIODriver) ----------------------
    @property
    def dataset(self) -> netCDF4.Dataset | None:
        """The open ``netCDF4.Dataset`` (None while there is none)."""
        return self._dataset

    def group(self, path: str) -> Any:
        """The ``netCDF4.Group`` at ``path`` (the Dataset for ``""``, creating a deferred
        file); KeyError if there is none."""
        return self._node(path) if path else self._ds()

    def create_dimension(self, name: str, size: int | None) -> None:
        """Create the root dimension ``name`` (unlimited if ``size`` is None) if missing.

        Raises
        ------
        ReadOnlyError
            It is missing and the file was opened read-only.
        """
        dataset = self._ds()
        if name in dataset.dimensions:
            return
        if self.read_only:
            raise ReadOnlyError(
                f"cannot create dimension {name!r}: {self._file_name!r} was opened read-only"
            )
        dataset.createDimension(name, size)

    def stop_truncating(self) -> None:
        """Open in ``'a'`` next time what an open in ``'w'`` created (after a close)."""
        if self._access_mode == "w" and os.path.exists(self._file_name):
            self._access_mode = "a"

    def dimension_names(self, path: str) -> tuple[str, ...]:
        """The netCDF dimension names of the variable at ``path`` (for xarray interop)."""
        return tuple(self._node(path).dimensions)

    # -- data ------------------------------------------------------------------------
    def write_entries(self, path: str, start: int, entries: Any) -> None:
        variable = self._node(path)
        if path in self._cache_unset:
            self._cache_before_use(path, variable)
        self._entries_written = True
        self._bytes_unread += getattr(entries, "nbytes", 0)
        if isinstance(entries, np.ndarray) and entries.dtype != _OBJECT:
            if entries.size == 0:
                return
            ndim = entries.ndim
            # _put skips netCDF4's Python-level slicing; the C write releases the GIL.
            variable._put(entries, [start] + [0] * (ndim - 1), list(entries.shape), [1] * ndim)
            return
        variable[start : start + len(entries)] = _object_array(entries, variable)

    def write_value(self, path: str, value: Any) -> None:
        variable = self._node(path)
        # A str or dict value goes to HDF5's global heap, metadata in its cache as a chunk
        # index is: a structural change must sync it first (see _before_structure_change).
        self._entries_written = True
        if isinstance(value, np.ndarray) and value.dtype != _OBJECT:
            if value.size == 0:
                return
            if value.ndim == 0:
                variable.assignValue(value)
            else:
                variable[...] = value
            return
        variable[...] = _object_array([value], variable).reshape(())

    def read_entries(self, path: str, start: int, stop: int, step: int = 1) -> Any:
        variable = self._node(path)
        if path in self._cache_unset:
            self._cache_before_use(path, variable)
        count = len(range(start, stop, step))
        shape = variable.shape[1:]
        if count == 0 or 0 in shape:
            return np.empty((count, *shape), dtype=variable.dtype)
        self._refuse_beyond_memory(path, (count, *shape), variable)
        try:
            if step < 0:  # netCDF4 reads [1:-1:-1] as up to the last entry: nothing
                lowest = start + (count - 1) * step
                return variable[lowest : start + 1 : -step][::-1]
            return variable[start:stop:step]
        except RuntimeError as exc:
            lowest, highest = sorted((start, start + (count - 1) * step))
            damaged = _damaged_entries(variable, lowest, highest + 1)
            if not damaged:
                raise
            raise DamagedDataError(
                f"entries {_ranges(damaged)} of {path!r} in {self._file_name!r} are damaged: "
                "the bytes in the file are not the ones written (their checksum does not "
                "match). Other entries read correctly; restore the file from a copy to get "
                "these back",
                path=path,
                entries=damaged,
            ) from exc

    def read_value(self, path: str) -> Any:
        variable = self._node(path)
        self._refuse_beyond_memory(path, variable.shape, variable)
        if 0 in variable.shape:
            return np.empty(variable.shape, dtype=variable.dtype)
        if variable.ndim == 0:
            value = variable.getValue()
            if variable.dtype is not str and isinstance(variable.datatype, netCDF4.VLType):
                # netCDF4 gives a one-element vlen as a 0-d array (b"x" as array(120)),
                # which bytes() would take for a length.
                value = np.atleast_1d(value)
            return value
        return variable[...]

    def _refuse_beyond_memory(self, path: str, shape: tuple[int, ...], variable: Any) -> None:
        # A file can declare a dimension of 2**40 at no cost; reading it would fill memory
        # (or ask numpy for terabytes). A read larger than the machine's memory is refused.
        itemsize = 8 if variable.dtype is str else max(1, np.dtype(variable.dtype).itemsize)
        nbytes = math.prod(shape) * itemsize
        if nbytes > _physical_memory():
            raise MemoryError(
                f"reading {path!r} of {self._file_name!r} needs {nbytes} bytes, more than "
                f"this machine's memory: read it in slices (read(slice(start, stop)))"
            )


def _damaged_entries(variable: Any, start: int, stop: int) -> list[tuple[int, int]]:
    """The entry ranges of ``variable`` in [start, stop) whose chunks fail their checksum
    (HDF5's Fletcher32 filter); [] if it has none or every chunk reads."""
    if not (variable.filters() or {}).get("fletcher32"):
        return []
    chunking = variable.chunking()
    rows = chunking[0] if isinstance(chunking, list) and chunking else 1
    damaged: list[tuple[int, int]] = []
    for first in range(start - start % rows, stop, rows):
        low, high = max(first, start), min(first + rows, stop)
        try:
            variable[low:high]
        except RuntimeError:
            if damaged and damaged[-1][1] == low:
                damaged[-1] = (damaged[-1][0], high)
            else:
                damaged.append((low, high))
    return damaged


def _ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ranges)


def resolve_file_path(file_name: str) -> str:
    """``file_name`` with every link resolved, checked for what writebehind may open there.

    Raises
    ------
    FileNotFoundError
        Its directory does not exist (the message names the directory).
    IsADirectoryError
        It is a directory.
    OSError
        It is something other than a regular file (a FIFO, a device, a socket): a NetCDF
        file cannot live there, and ``'w'`` must not replace it.
    """
    path = os.path.realpath(file_name)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        given = os.path.dirname(os.path.abspath(file_name))
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot open {file_name!r}: its directory {given!r} does not exist",
            given,
        )
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(
            errno.EISDIR, f"{file_name!r} is a directory, not a NetCDF file", file_name
        )
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise OSError(
            errno.EINVAL,
            f"{file_name!r} is {kind}: writebehind stores NetCDF files only in regular "
            "files, and leaves it as it is",
            file_name,
        )
    return path


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform
        return 1 << 62


def _attrs(node: Any) -> dict[str, Any]:
    return {name: node.getncattr(name) for name in node.ncattrs()}


def _netcdf3_shape(variable: Any) -> Shape:
    dims = variable.get_dims()
    return Shape(tuple(len(d) for d in dims), bool(dims) and dims[0].isunlimited())


def _storage_of(variable: Any) -> str:
    if variable.dtype is str:
        return "string"
    datatype = variable.datatype
    if isinstance(datatype, netCDF4.VLType) and np.dtype(datatype.dtype) == np.uint8:
        return "bytes"
    return "numeric"


def _dtype_of(variable: Any) -> np.dtype[Any]:
    if variable.dtype is str or isinstance(variable.datatype, netCDF4.VLType):
        return _OBJECT
    return np.dtype(variable.dtype)


def _new_dimension(group: Any, name: str, size: int | None) -> str:
    """Create a dimension called ``name`` (or ``name_1``... if taken) and return its name.

    A name too long for netCDF (a variable name near NC_MAX_NAME, plus ``_entry``) is cut,
    with a checksum of the whole appended so that different names stay different.
    """
    name = _fit_dimension_name(name)
    candidate, n = name, 0
    while candidate in group.dimensions or candidate in group.variables:
        n += 1
        candidate = f"{name}_{n}"
    group.createDimension(candidate, size)
    return candidate


def _fit_dimension_name(name: str) -> str:
    encoded = name.encode("utf-8")
    if len(encoded) <= DIMENSION_NAME_BYTES:
        return name
    head = encoded[: DIMENSION_NAME_BYTES - 9].decode("utf-8", "ignore").rstrip()
    return f"{head}_{zlib.crc32(encoded):08x}"


@functools.lru_cache(maxsize=1024)  # on the caller's path: each new variable asks
def chunk_shape(layout: Layout) -> tuple[int, ...]:
    """``CHUNK_TARGET_BYTES`` of whole entries plus two (at most 8192 entries and
    ``CHUNK_SLICE_BYTES``), or equal slices of an entry over ``CHUNK_SLICE_BYTES``.

    HDF5 allocates a chunk whole, so a variable holding a few entries takes a whole chunk
    on disk. Issue 14's bound for short runs, 2x the raw bytes plus 64 KiB a variable, must
    hold from the first entry: a chunk of c entries of e bytes, plus the variable's own
    metadata (about 5 KB), within 2e + 64 KiB. Two entries plus 48 KiB is the largest chunk
    that does (1 MiB chunks made 3,000 variables of one small entry 1.6 GB). Smaller chunks
    mean more of them: appends and reads do not notice (docs/performance.md, "How cost
    grows"), and the metadata journal of a structural flush looks only at the chunks and
    index nodes added since the last one (``stable``), so its cost follows the change, not
    the number of chunks in the file.

    The engine stages entries in buffers of whole chunks, so each write fills whole
    chunks. An entry over the slice size is split evenly along its first axis: a chunk that
    overhangs the entry is still stored whole (1 MiB slices of a 2.4 MB entry would store 3
    MiB). Files written with other chunk shapes (about 1 MiB before this version) are read
    and appended to as they are: the shape is each variable's own.
    """
    entry_shape = tuple(max(1, int(n)) for n in layout.shape)
    if layout.storage != "numeric":
        return (1024,)
    entry_bytes = max(1, math.prod(entry_shape) * layout.dtype.itemsize)
    if entry_bytes <= CHUNK_SLICE_BYTES:
        fits = CHUNK_TARGET_BYTES // entry_bytes + 2
        entries = max(1, min(CHUNK_MAX_ENTRIES, fits, CHUNK_SLICE_BYTES // entry_bytes))
        return (entries, *entry_shape)
    pieces = -(-entry_bytes // CHUNK_SLICE_BYTES)
    rows = -(-entry_shape[0] // pieces)
    return (1, rows, *entry_shape[1:])


def _small_chunk_cache(variable: Any, chunks: tuple[int, ...], itemsize: int) -> None:
    """Give an appendable variable an HDF5 chunk cache of two chunks, not netCDF's 64 MiB.

    The engine writes whole chunks from its own buffers, so a large cache only holds dirty
    copies of them: it adds to the RSS and defers the writing to the next sync or close,
    where it no longer overlaps with the caller's appends. Reading a whole variable through
    a large cache copies every chunk into fresh cache memory first (2-3x slower here).
    """
    if _stored_under_another_name(variable):
        return
    chunk_bytes = int(np.prod(chunks, dtype=np.int64)) * itemsize
    variable.set_var_chunk_cache(size=max(2 * chunk_bytes, CHUNK_SLICE_BYTES))


def _stored_under_another_name(variable: Any) -> bool:
    """Whether netCDF-C stores ``variable`` as the HDF5 dataset ``_nc4_non_coord_<name>``:
    it does so for a variable named like a dimension of its group that is not that
    dimension's coordinate variable (``x_entry`` beside the ``x_entry`` dimension of ``x``).

    Setting the chunk cache of such a variable once its dataset exists makes netCDF-C
    (4.10 and earlier) reopen the dataset by the variable's name -- the dimension's
    dataset -- and the variable then reads (and writes) that one: "HDF error".
    """
    dimensions = variable.dimensions
    name = variable.name
    return name in variable.group().dimensions and (not dimensions or dimensions[0] != name)


def _object_array(items: Any, variable: Any) -> np.ndarray[Any, Any]:
    out = np.empty(len(items), dtype=object)
    if variable.dtype is str:
        out[:] = list(items)
    else:
        for i, item in enumerate(items):
            out[i] = np.frombuffer(item, dtype=np.uint8)
    return out


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- netCDF-C's errors -------------------------------------------------------------------
#: Datasets whose close failed (HDF5 could not flush its cache, on a full disk): netCDF-C
#: keeps such a file open and locked, so the next open of the same path in this process
#: first closes it again, which succeeds once there is room. Keyed by real path.
_LEFT_OPEN: dict[str, Any] = {}
#: A netCDF call that fails while the file system has less free space than this reports
#: ENOSPC: HDF5 reduces a failed write(2) to a bare "NetCDF: HDF error".
DISK_FULL_BYTES = CHUNK_SLICE_BYTES


def _close_left_open(file_name: str) -> None:
    """Close the dataset an earlier failed close left open on ``file_name``, if any."""
    key = file_name  # resolved by the caller
    dataset = _LEFT_OPEN.pop(key, None)
    if dataset is None or not dataset.isopen():
        return
    try:
        dataset.close()
    except RuntimeError as exc:
        _LEFT_OPEN[key] = dataset
        raise _library_error(exc, file_name, "closing (after an earlier failed close)", "") from exc
    _OPEN_FILES.discard(dataset)


def _library_error(exc: RuntimeError, file_name: str, operation: str, path: str) -> OSError:
    """netCDF-C's error ``exc`` as an OSError naming the operation, the node and the file."""
    where = f"{operation} {path!r} in {file_name!r}" if path else f"{operation} {file_name!r}"
    if _free_bytes(file_name) < DISK_FULL_BYTES:
        error = OSError(errno.ENOSPC, f"{where} failed: {exc}: no space left on device")
    else:
        error = OSError(
            errno.EIO,
            f"{where} failed: {exc} (netCDF-C gives no cause: a damaged file, or a write "
            "the file system or a quota refused)",
        )
    return error


def _free_bytes(file_name: str) -> int:
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(file_name)))
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return 1 << 62
    return stat.f_bavail * stat.f_frsize


def _raising_oserror(method: Any, operation: str) -> Any:
    """``method`` with netCDF-C's errors (RuntimeError) re-raised by ``_library_error``."""

    @functools.wraps(method)
    def wrapper(self: NetCDFBackend, *args: Any, **kwargs: Any) -> Any:
        try:
            result = method(self, *args, **kwargs)
            return iter(list(result)) if method.__name__ == "scan" else result
        except RuntimeError as exc:
            if type(exc) is not RuntimeError:  # RecursionError, NotImplementedError
                raise
            path = args[0] if args and isinstance(args[0], str) else ""
            raise _library_error(exc, self.file_name, operation, path) from exc

    return wrapper


for _method, _operation in {
    "scan": "reading the structure of",
    "sync": "syncing",
    "close": "closing",
    "create_group": "creating group",
    "create_variable": "creating variable",
    "set_attrs": "setting attributes of",
    "get_attrs": "reading attributes of",
    "write_entries": "writing entries of",
    "write_value": "writing",
    "read_entries": "reading entries of",
    "read_value": "reading",
}.items():
    setattr(NetCDFBackend, _method, _raising_oserror(getattr(NetCDFBackend, _method), _operation))
