"""Where no flush of this session can write: the ranges the metadata journal leaves out,
found incrementally so that its cost follows what changed, not the size of the file.

The metadata journal (``metajournal``) must hold the pre-image of every byte below the last
sync's end of allocation (EOA) that HDF5 may overwrite in a structural flush. It leaves out
two kinds of ranges, which no flush of a writebehind session writes:

- *Raw data that keeps its place*: the chunks of a dataset without filters or with
  Fletcher32 alone (a chunk keeps its size, its address, and its earlier rows' bytes when
  rewritten), and contiguous storage. The argument is ``metajournal``'s.
- *Chunk-index nodes off the rightmost path*: the nodes of a version 1 B-tree indexing the
  chunks of a dataset without filters, other than the root and the last child of each node
  on the way down. Entries are only added at the end of a variable, so HDF5 inserts chunks
  at the right end of the index: it changes the nodes on the rightmost path (keys, a new
  child, a split, in which the old node keeps the left half and the right half goes to a new
  address; a root that splits moves its old contents to a new address and keeps its own). A
  chunk of an unfiltered dataset rewritten in place keeps its index entry, so no node is
  touched for it. A node off the rightmost path therefore keeps its bytes, stays off the
  path (it only moves right) and is never freed (a flush never shrinks or deletes a
  dataset). ``journal`` (the chunk-index undo journal) rests on the same fact. Indexes of
  filtered datasets, Fletcher32 alone included, are journaled whole: HDF5 may update the
  entry of a filtered chunk it rewrites, wherever it is.

Both only grow within a session, so :class:`StableRanges` remembers what it found. The
first journal of a session lists every dataset; later ones look only at the datasets of the
variables the driver names (:meth:`StableRanges.note`: created, appended to or given a value
since the last look), since a dataset no flush wrote gained nothing, and what was found of
it stays stable. Of those it reads only the nodes of the index's rightmost path and those
that left it since. What is not looked at is journaled, which is safe: this can only find
less than a listing from scratch, never more. If a dataset shrinks or is another object
under its name, everything is forgotten and found again, as a first journal does.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .hdf5 import CHUNK_CALLBACK, VISIT_CALLBACK, dataset_header, hsize, read_only
from .journal import ChunkIndex, index_of

__all__ = ["Extents", "StableRanges"]

_UNDEFINED = (1 << 64) - 1  # HADDR_UNDEF: storage not allocated yet
_H5O_TYPE_DATASET = 1
_H5O_TYPE_OFFSET = 24  # in H5O_info2_t: fileno (8), token (16), then the type
_H5D_CONTIGUOUS, _H5D_CHUNKED = 1, 2
_H5Z_FILTER_FLETCHER32 = 3
_MAX_RANK = 32  # H5S_MAX_RANK
_B_TREE_LEVELS = 64  # deeper would index more chunks than exist
_B_TREE_K = 32  # netCDF's chunk indexes: at most 2K = 64 children a node


class Extents:
    """A set of byte ranges of a file, kept as sorted, disjoint, merged intervals."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, address: int, length: int) -> None:
        """Add ``[address, address + length)`` (adding what is there already changes
        nothing)."""
        if length <= 0:
            return
        start, end = address, address + length
        first = bisect.bisect_left(self._ends, start)  # touching intervals merge
        last = bisect.bisect_right(self._starts, end)
        if first < last:
            start = min(start, self._starts[first])
            end = max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]

    def gaps(self, eoa: int) -> list[tuple[int, int]]:
        """The (address, length) ranges of ``[0, eoa)`` outside the set."""
        out = []
        at = 0
        for start, end in zip(self._starts, self._ends, strict=True):
            if start >= eoa:
                break
            if start > at:
                out.append((at, start - at))
            at = max(at, end)
        if at < eoa:
            out.append((at, eoa - at))
        return out


@dataclass
class _Dataset:
    header: int  # object header address: another object under the name is another dataset
    layout: int
    stable_raw: bool  # no filter, or Fletcher32 alone: chunks keep their place
    unfiltered: bool  # no filter at all: the index's entries change only at its right end
    rank: int = 0
    dims: tuple[int, ...] = ()
    contiguous_found: bool = False
    index: ChunkIndex | None = None  # None: its chunks are listed by HDF5 at each update
    done: set[int] = field(default_factory=set)  # index nodes off the path, already read


class StableRanges:
    """The stable ranges of the HDF5 file at ``path`` as the HDF5 library of this process
    knows it (the file open in netCDF4 for writing), kept up to date by :meth:`update`
    (on the writer thread, under the library lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._datasets: dict[bytes, _Dataset] = {}
        self._extents = Extents()
        #: Index nodes read and chunks listed by HDF5 in the last update (a measure of its
        #: cost for the tests).
        self.lookups = 0
        self._nodes_known = False  # the file's chunk-index nodes have the size computed
        self._pending: set[str] = set()  # variables created or written since the last look
        self._listed = False  # every dataset of the file was listed once

    def note(self, paths: Iterable[str]) -> None:
        """The netCDF variables at ``paths`` (such as ``"g/v"``) were created or written to
        since the last look: the next :meth:`update` or :meth:`advance` looks at them."""
        self._pending.update(paths)

    def update(self) -> bool:
        """Find what was added since the last call; False if HDF5 cannot tell (nothing is
        then known to be stable: the caller keeps a rollback copy).

        The first call lists every dataset of the file; later ones look only at the
        datasets of the variables :meth:`note` named since (a dataset no variable of this
        session changed keeps what was found of it: see the module's docstring).
        """
        self.lookups = 0
        with read_only(self.path) as opened, open(self.path, "rb") as headers:
            if opened is None:
                return False
            h5, file = opened
            # ``headers``: the layout messages are read on disk (one open, not one each)
            looked = self._update_noted(h5, file, headers) if self._listed else None
            if looked is None:
                self._listed = False
                looked = self._update_all(h5, file, headers)
                if looked is None:
                    return False
                self._listed = True
        self._pending.clear()
        # After our identifier is closed (which flushes the shared file): the indexes on
        # disk are HDF5's, and are read from there.
        with open(self.path, "rb") as raw:
            for dataset in looked:
                if dataset.index is not None:
                    self._read_index(raw.fileno(), dataset)
        return True

    def _update_all(self, h5: Any, file: int, headers: BinaryIO) -> list[_Dataset] | None:
        """List every dataset of the file and look at each; None if HDF5 cannot tell."""
        found = _datasets_of(h5, file)
        if found is None:
            return None
        self._nodes_known = _istore_k(h5, file) == _B_TREE_K  # else node_size is wrong
        for attempt in range(2):
            if attempt or any(
                name not in found or found[name] != known.header
                for name, known in self._datasets.items()
            ):
                self._datasets, self._extents = {}, Extents()  # start over, from scratch
            shrunk = False
            for name, header in found.items():
                result = self._update_dataset(h5, file, headers, name, header)
                if result is None:
                    self._datasets, self._extents = {}, Extents()
                    return None
                shrunk = shrunk or not result
            if not shrunk:
                break
        return list(self._datasets.values())

    def _update_noted(self, h5: Any, file: int, headers: BinaryIO) -> list[_Dataset] | None:
        """Look at the datasets of the noted variables only; None if that is not enough (a
        dataset shrank or is another object than the one known under its name, or HDF5
        cannot tell): the caller then starts over from every dataset."""
        looked = []
        for path in sorted(self._pending):
            found = dataset_header(h5, file, path)
            if found is None:
                continue  # no dataset (yet): nothing of it to find
            name, header = found
            known = self._datasets.get(name)
            if known is not None and known.header != header:
                return None
            if not self._update_dataset(h5, file, headers, name, header):
                return None
            looked.append(self._datasets[name])
        return looked

    def advance(self) -> bool:
        """Read the chunk indexes of the noted datasets found so far, as far as they grew
        since the last look (disk reads only). Called after a sync that wrote many entries,
        so that the next :meth:`update` has little left to read; never before the first
        :meth:`update`, which finds the datasets. A noted variable whose dataset has no
        index known yet stays noted for the next :meth:`update`: False if there is one."""
        self.lookups = 0
        with open(self.path, "rb") as raw:
            for path in list(self._pending):
                parent, _, leaf = path.rpartition("/")
                secret = f"{parent}/_nc4_non_coord_{leaf}".lstrip("/").encode()
                dataset = self._datasets.get(secret) or self._datasets.get(path.encode())
                if dataset is None or dataset.index is None or dataset.index.root == _UNDEFINED:
                    continue
                self._read_index(raw.fileno(), dataset)
                self._pending.discard(path)
        return not self._pending

    @property
    def started(self) -> bool:
        """Whether :meth:`update` found the file's datasets."""
        return self._listed

    def gaps(self, eoa: int) -> list[tuple[int, int]]:
        """The ranges of ``[0, eoa)`` that are not known to be stable."""
        return self._extents.gaps(eoa)

    def _update_dataset(
        self, h5: Any, file: int, headers: BinaryIO, name: bytes, header: int
    ) -> bool | None:
        """Look at one dataset: False if it shrank or changed shape (HDF5 may have freed
        space of it), None if HDF5 cannot tell."""
        handle = h5.H5Dopen2(file, name, 0)
        if handle < 0:
            return None
        try:
            dataset = self._datasets.get(name)
            if dataset is None:
                dataset = _describe(h5, handle, header)
                if dataset is None:
                    return None
                self._datasets[name] = dataset
            if not dataset.stable_raw:
                return True  # its chunks move: journaled like metadata
            if dataset.layout == _H5D_CONTIGUOUS and not dataset.contiguous_found:
                address = h5.H5Dget_offset(handle)
                if address != _UNDEFINED:
                    self._extents.add(address, h5.H5Dget_storage_size(handle))
                    dataset.contiguous_found = True
            elif dataset.layout == _H5D_CHUNKED:
                dims = _dims(h5, handle)
                if dims is None:
                    return None
                if dataset.dims and (dims[0] < dataset.dims[0] or dims[1:] != dataset.dims[1:]):
                    return False
                dataset.dims = dims
                if dataset.index is None or dataset.index.root == _UNDEFINED:
                    dataset.index = index_of(headers, header, dataset.rank)
                if dataset.index is None or not self._nodes_known:
                    # Not an index this reads (other programs' files): HDF5 lists the chunks.
                    dataset.index = None
                    return self._list_chunks(h5, handle)
            return True
        finally:
            h5.H5Dclose(handle)

    def _list_chunks(self, h5: Any, handle: int) -> bool | None:
        @CHUNK_CALLBACK
        def chunk(offset: Any, mask: int, address: int, size: int, data: Any) -> int:
            if address != _UNDEFINED and size > 0:
                self._extents.add(address, size)
                self.lookups += 1
            return 0

        return None if h5.H5Dchunk_iter(handle, 0, chunk, None) < 0 else True

    def _read_index(self, fd: int, dataset: _Dataset) -> None:
        """Add the chunks of the index (read from disk) and, for an unfiltered dataset, its
        nodes off the rightmost path; nodes read off the path once are not read again."""
        index = dataset.index
        assert index is not None
        address, level = index.root, None
        for _ in range(_B_TREE_LEVELS):
            node = self._node(fd, index, address, level)
            if node is None:
                return
            level, entries = node
            if level == 0:  # the last leaf: chunks are added to it; re-read every time
                self._add_chunks(entries)
                return
            children = [child for _, child in entries]
            for child in children[:-1]:
                if child not in dataset.done:
                    self._read_subtree(fd, dataset, child, level - 1)
            if not children:
                return
            address, level = children[-1], level - 1

    def _read_subtree(self, fd: int, dataset: _Dataset, address: int, level: int) -> None:
        index = dataset.index
        assert index is not None
        pending = [(address, level)]
        while pending:
            address, level = pending.pop()
            node = self._node(fd, index, address, level)
            if node is None:
                continue  # not a node as expected: its bytes and chunks stay journaled
            if level == 0:
                self._add_chunks(node[1])
            else:
                pending += [(child, level - 1) for _, child in node[1]]
            dataset.done.add(address)
            if dataset.unfiltered:
                self._extents.add(address, index.node_size)

    def _node(
        self, fd: int, index: ChunkIndex, address: int, level: int | None
    ) -> tuple[int, list[tuple[int, int]]] | None:
        """The level and entries (chunk size, child address) of the chunk-index node at
        ``address``; None if the bytes there are not such a node (of ``level``, if given)."""
        if address >= 1 << 63:
            return None
        self.lookups += 1
        node = os.pread(fd, index.node_size, address)
        if len(node) < index.node_size or node[:4] != b"TREE" or node[4] != 1:
            return None
        if level is not None and node[5] != level:
            return None
        used = int.from_bytes(node[6:8], "little")
        if used > 2 * _B_TREE_K:
            return None
        entry = _entry_format(index.key_size)
        return node[5], list(entry.iter_unpack(node[24 : 24 + used * entry.size]))

    def _add_chunks(self, entries: list[tuple[int, int]]) -> None:
        """Add the chunks of a leaf, adjacent ones as one range."""
        start = end = -1
        for size, address in entries:
            if address != end:
                self._extents.add(start, end - start)
                start = address
            end = address + size
        self._extents.add(start, end - start)


@functools.cache
def _entry_format(key_size: int) -> struct.Struct:
    """A key (its first 4 bytes: the chunk's size in the file) and the child's address."""
    return struct.Struct(f"<I{key_size - 4}xQ")


def _datasets_of(h5: Any, file: int) -> dict[bytes, int] | None:
    """Every dataset of the file: name -> object header address."""
    found: dict[bytes, int] = {}

    @VISIT_CALLBACK
    def visit(obj: int, name: bytes, info: int, data: Any) -> int:
        if ctypes.c_int.from_address(info + _H5O_TYPE_OFFSET).value == _H5O_TYPE_DATASET:
            found[name] = ctypes.c_uint64.from_address(info + 8).value  # the token's address
        return 0

    if h5.H5Ovisit3(file, 0, 0, visit, None, 1) < 0:  # by name, increasing; H5O_INFO_BASIC
        return None
    return found


def _istore_k(h5: Any, file: int) -> int:
    """The file's "istore K" (half the children of a chunk-index node); 0 if unknown."""
    plist = h5.H5Fget_create_plist(file)
    if plist < 0:
        return 0
    try:
        k = ctypes.c_uint()
        return k.value if h5.H5Pget_istore_k(plist, ctypes.byref(k)) >= 0 else 0
    finally:
        h5.H5Pclose(plist)


def _describe(h5: Any, handle: int, header: int) -> _Dataset | None:
    plist = h5.H5Dget_create_plist(handle)
    if plist < 0:
        return None
    try:
        layout, filters = h5.H5Pget_layout(plist), h5.H5Pget_nfilters(plist)
        rank = 0
        if layout == _H5D_CHUNKED:
            rank = h5.H5Pget_chunk(plist, _MAX_RANK, (hsize * _MAX_RANK)())
            if rank < 0:
                return None
        unfiltered = filters == 0
        stable = unfiltered or _only_fletcher32(h5, plist, filters)
        return _Dataset(header, layout, stable, unfiltered, rank)
    finally:
        h5.H5Pclose(plist)


def _dims(h5: Any, handle: int) -> tuple[int, ...] | None:
    space = h5.H5Dget_space(handle)
    if space < 0:
        return None
    try:
        dims = (hsize * _MAX_RANK)()
        rank = h5.H5Sget_simple_extent_dims(space, dims, None)
        return None if rank < 0 else tuple(dims[:rank])
    finally:
        h5.H5Sclose(space)


def _only_fletcher32(h5: Any, plist: int, filters: int) -> bool:
    """Whether the dataset creation property list ``plist`` has no filter but Fletcher32."""
    if filters != 1:
        return False
    flags, elements = ctypes.c_uint(), ctypes.c_size_t(0)
    config = ctypes.c_uint()
    kind = h5.H5Pget_filter2(
        plist, 0, ctypes.byref(flags), ctypes.byref(elements), None, 0, None, ctypes.byref(config)
    )
    return int(kind) == _H5Z_FILTER_FLETCHER32
