"""An undo journal of the chunk indexes a flush may rewrite in place.

The chunks of each appendable variable are indexed by an HDF5 version 1 B-tree of at most 64
chunks a node. When a flush adds a chunk to a full node, HDF5 splits it: it rewrites the node
(or the root) in place, pointing to a new node that it writes after it. The kill-torture
showed that a kill in between loses entries earlier flushes acknowledged: they hang under a
node that was never written.

Entries are only ever added at the end of a variable, so a flush can only rewrite the nodes
on the *rightmost path* of each index (the root, then the last child of each node down to
the last leaf); everything it adds is written at new addresses. The driver keeps those
nodes, as the last completed sync left them on disk, in ``FILE.writebehind-undo-<inode>``
(each record with a CRC32, the whole with an end marker), and deletes the journal when the
file is closed. Recovery writes a complete journal back: the indexes are then exactly as
the last completed sync left them, which is what the committed lengths count (chunks keep
their addresses, and an earlier row keeps its bytes when its chunk is rewritten). A flush
that changes the file's structure voids the journal; the metadata journal (``metajournal``)
guards it instead.

Where the indexes are: HDF5 is asked for the object header address of every appendable
variable (in this process, through the library netCDF4 loaded, ``hdf5.header_addresses``;
in a fresh interpreter, ``probe.object_header_addresses``, where that is not possible),
under its HDF5 name (netCDF-C stores a variable named like one of its group's dimensions
as ``_nc4_non_coord_<name>``, and ``<name>`` is then the dimension's dataset); the header's
data layout message (version 3,
chunked, of the variable's rank) holds the index's root address, and the nodes are read
from there. An index no chunk was written to yet has no root: it is looked up again at each
sync that appends to its variable until it has one. Variables stored otherwise (other layout
versions, other index types) are not journaled. The driver names the variables each sync
appended to, and only their indexes are looked up (once) and read again (see IndexJournal).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .hdf5 import header_addresses
from .probe import object_header_addresses
from .sidefiles import UNDO_SUFFIX, FileIdentity, close_and_remove, create_exclusive

__all__ = [
    "ChunkIndex",
    "IndexJournal",
    "index_of",
    "journal_path",
    "load_journal",
    "nodes_differ",
    "write_back",
]

logger = logging.getLogger("writebehind")

_MAGIC = b"WBUNDO2\n"
_END = b"WBEND\n"
_B_TREE_K = 32  # HDF5's default "istore K": 2K = 64 chunks a node (netCDF never changes it)
_OFFSET = 8  # netCDF-4 files use 8-byte addresses; other files are not journaled
_UNDEFINED = (1 << 64) - 1  # HDF5's "undefined address": an index with no chunk yet
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def journal_path(path: str) -> str:
    """Where the journal of the file at ``path`` is kept."""
    return path + UNDO_SUFFIX


@dataclass(frozen=True)
class ChunkIndex:
    """Where a dataset's chunk index (a version 1 B-tree) is, and the size of its nodes."""

    header: int  # address of the variable's object header
    root: int  # address of the B-tree's root node; _UNDEFINED before the first chunk
    key_size: int  # bytes of one key: chunk size, filter mask, one offset per dimension

    @property
    def rank(self) -> int:
        return (self.key_size - 8) // 8 - 1

    @property
    def node_size(self) -> int:
        entries = 2 * _B_TREE_K
        return 8 + 2 * _OFFSET + (entries + 1) * self.key_size + entries * _OFFSET


class IndexJournal:
    """Keeps ``FILE.writebehind-undo-<inode>`` holding the nodes on the rightmost path of
    every chunk index as the last completed sync left them (on the writer thread).

    Before a sync the journal is checked against the file (a few small reads) and rewritten
    only if the nodes changed; after it, it is brought up to date. So it changes only when an
    index does (once a chunk of a variable), and only then costs a write, and
    an fdatasync when the flush is durable: the pre-images must be on disk before the sync
    rewrites them, and a stale journal must never outlive a durable flush.

    Given the variables a sync appended to (``appended``, as the driver passes them), only
    their indexes are looked up and read: an index changes only when entries are added to
    its variable, and keeps its root's address for the life of the file (a root that splits
    keeps its address: ``stable``), so what was read of the others still holds. Without it,
    every index is read (the tests' way, and any caller that cannot tell).
    """

    def __init__(
        self,
        path: str,
        identity: FileIdentity,
        variables: Callable[[], dict[str, int]] | None = None,
    ):
        self.path = path
        self._identity = identity
        #: The appendable variables of the open file (path -> dimensions), when the caller
        #: has the file open in this process: their indexes are then found here.
        self._variables = variables
        self._indexes: dict[str, ChunkIndex] = {}
        #: Per index, its journal records: the rightmost path as the last sync left it.
        self._records: dict[str, bytes] = {}
        self._counts: dict[str, int] = {}  # records (nodes) of each
        self._unindexed: set[str] = set()  # variables whose index this does not read
        self._changed = False  # a record changed since the journal was last built
        self._stale = True  # the variables changed: find the indexes again
        self._found_all = False  # every appendable variable's index was looked up
        self._fd = -1  # the journal, open for as long as the store
        self._target = ""
        self._written = b""  # what the journal holds; b"" when it holds nothing valid
        self._durable = False  # whether that is fsynced
        #: Index nodes read in the last before_sync or after_sync (a measure of its cost).
        self.lookups = 0

    def mark_stale(self) -> None:
        """The file's structure is about to change: void the journal until the next sync
        that writes entries finds the indexes again (the metadata journal guards this one).
        What was read of each index stays: a structural flush moves no index, and the
        indexes it appends to are read again after it (``after_sync``)."""
        self._stale = True
        if self._fd >= 0 and self._written:
            os.pwrite(self._fd, bytes(len(_MAGIC)), 0)
            self._written = b""
            self._durable = False

    def before_sync(self, durable: bool, appended: dict[str, int] | None = None) -> None:
        """Make sure the journal holds the nodes as they are on disk (fsynced if durable).

        ``appended``: the variables (path -> dimensions) this sync writes entries of; those
        not known yet are looked up now. None: every index is found (if stale) and read.
        """
        self.lookups = 0
        if appended is None:
            if self._stale or not self._found_all:
                self._refresh()
            self._read(list(self._indexes))
        else:
            self._read(self._look_up_unknown(appended))
        self._record(durable)

    def after_sync(
        self, durable: bool, appended: dict[str, int] | None = None, *, record: bool = True
    ) -> None:
        """Bring the journal up to date with the nodes the sync wrote: those of the indexes
        of ``appended`` (the variables the sync wrote entries of, looked up now if new;
        None: every index known).

        ``record=False`` after a sync the metadata journal guarded: what is known of the
        indexes is brought up to date, and the journal is written by the next
        :meth:`before_sync`.
        """
        self.lookups = 0
        if appended is None:
            self._read(list(self._indexes))
        else:
            self._look_up_unknown(appended)  # read below, with the others
            self._read([path for path in appended if path in self._indexes])
        if record:
            self._record(durable)

    def close(self) -> None:
        """Delete the journal (the file was closed cleanly)."""
        if self._fd >= 0:
            close_and_remove(self._fd, self._target)
            self._fd = -1

    def _refresh(self) -> None:
        """Find the index of every appendable variable: in this process when the file is
        open in it (under the library lock), else in a subprocess (about 0.2 s)."""
        self._indexes, self._records, self._counts, self._unindexed = {}, {}, {}, set()
        self._changed = True
        variables = self._variables() if self._variables is not None else None
        self._look_up(variables)
        self._stale = False
        self._found_all = True

    def _look_up_unknown(self, variables: dict[str, int]) -> list[str]:
        """Find the indexes of those of ``variables`` not looked up yet; their paths."""
        unknown = {
            path: ndim
            for path, ndim in variables.items()
            if path not in self._indexes and path not in self._unindexed
        }
        return self._look_up(unknown) if unknown else []

    def _look_up(self, variables: dict[str, int] | None) -> list[str]:
        """Find the indexes of ``variables`` (path -> dimensions; None: every appendable
        variable, in a subprocess); the paths of those found."""
        headers = None
        if variables is not None:
            headers = header_addresses(self.path, variables)
        if headers is None:
            headers = object_header_addresses(self.path)
            if variables is not None:
                headers = {name: found for name, found in headers.items() if name in variables}
        found = []
        with open(self.path, "rb") as file:
            for name, (address, ndim) in headers.items():
                index = index_of(file, address, ndim)
                if index is None:
                    self._unindexed.add(name)
                else:
                    self._indexes[name] = index
                    found.append(name)
        return found

    def _read(self, paths: list[str]) -> None:
        """Read the rightmost path of the indexes of ``paths`` from disk into the records."""
        with open(self.path, "rb") as file:
            for name in paths:
                index = self._indexes[name]
                if index.root == _UNDEFINED:  # the last sync may have written a first chunk
                    index = index_of(file, index.header, index.rank) or index
                    self._indexes[name] = index
                records = []
                for address, data in _rightmost_path(file.fileno(), index):
                    head = struct.pack("<QI", address, len(data))
                    records.append(head + data + struct.pack("<I", zlib.crc32(head + data)))
                    self.lookups += 1
                joined = b"".join(records)
                if self._records.get(name) != joined:
                    self._records[name] = joined
                    self._counts[name] = len(records)
                    self._changed = True

    def _record(self, durable: bool) -> None:
        if not self._indexes:
            return
        if self._changed or not self._written:
            content = self._content()
            self._changed = False
        else:
            content = self._written  # no node read since the last write changed
        if content != self._written:
            if self._fd < 0:
                self._target = journal_path(self.path)
                self._fd = create_exclusive(self._target)
            os.pwrite(self._fd, content, 0)
            os.ftruncate(self._fd, len(content))
            self._written = content
            self._durable = False
        if durable and not self._durable:
            _fdatasync(self._fd)
            self._durable = True

    def _content(self) -> bytes:
        count = sum(self._counts.values())
        parts = [_MAGIC, self._identity.pack(), *self._records.values()]
        parts.append(_END + struct.pack("<I", count))
        return b"".join(parts)


def load_journal(path: str) -> tuple[FileIdentity, list[tuple[int, bytes]]] | None:
    """The identity and the records of the complete, intact journal of ``path``; None if
    there is none, or it is incomplete (a kill while it was written) or voided."""
    try:
        with open(journal_path(path), "rb") as journal:
            data = journal.read()
    except FileNotFoundError:
        return None
    if not data.startswith(_MAGIC):
        return None
    identity = FileIdentity.unpack(data[len(_MAGIC) : len(_MAGIC) + FileIdentity.SIZE])
    records = _parse(data, len(_MAGIC) + FileIdentity.SIZE)
    if identity is None or records is None:
        return None
    return identity, records


def nodes_differ(fd: int, records: list[tuple[int, bytes]]) -> bool:
    """Whether the file open as ``fd`` holds other bytes than the journal's nodes."""
    return any(os.pread(fd, len(node), address) != node for address, node in records)


def write_back(path: str, fd: int, records: list[tuple[int, bytes]]) -> int:
    """Write the journal's nodes back into the file open as ``fd``; the number written."""
    for address, node in records:
        os.pwrite(fd, node, address)
    if records:
        os.fsync(fd)
        logger.warning(
            "writebehind: %s: a flush was interrupted; %d chunk-index node(s) restored from %s",
            path,
            len(records),
            journal_path(path),
        )
    return len(records)


def _parse(data: bytes, at: int) -> list[tuple[int, bytes]] | None:
    """The records of a complete, intact journal from offset ``at``; None otherwise."""
    records = []
    while data[at : at + len(_END)] != _END:
        if at + 12 > len(data):
            return None
        address, length = struct.unpack_from("<QI", data, at)
        end = at + 12 + length
        if end + 4 > len(data):
            return None
        (crc,) = struct.unpack_from("<I", data, end)
        if zlib.crc32(data[at:end]) != crc:
            return None
        records.append((address, data[at + 12 : end]))
        at = end + 4
    tail = data[at + len(_END) : at + len(_END) + 4]
    if len(tail) != 4 or struct.unpack("<I", tail)[0] != len(records):
        return None
    return records


# -- reading the file ------------------------------------------------------------------------
def index_of(file: BinaryIO, address: int, ndim: int) -> ChunkIndex | None:
    """The chunk index named by the data layout message of the object header at
    ``address``, a dataset of ``ndim`` dimensions; None if the header or the layout is of
    a kind this does not read, or of another rank (not the variable's dataset)."""
    for kind, body in _messages(file, address):
        if kind != 0x0008:  # data layout
            continue
        if len(body) < 3 + _OFFSET or body[0] != 3 or body[1] != 2:  # version 3, chunked
            return None
        dimensionality = body[2]  # the rank, plus one for the element size
        if dimensionality != ndim + 1:
            return None
        root = int.from_bytes(body[3 : 3 + _OFFSET], "little")
        return ChunkIndex(address, root, 8 + 8 * dimensionality)
    return None


def _messages(file: BinaryIO, address: int) -> list[tuple[int, bytes]]:
    """The (type, body) of each message of a version 2 object header, continuations
    included; [] for a header of another version."""

    def read(at: int, n: int) -> bytes:
        file.seek(at)
        return file.read(n)

    head = read(address, 6)
    if head[:4] != b"OHDR" or head[4] != 2:
        return []
    flags = head[5]
    at = address + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 0x03)
    size = int.from_bytes(read(at, width), "little")
    chunks = [(at + width, size)]
    order = 2 if flags & 0x04 else 0
    messages = []
    while chunks and len(chunks) < 1000:
        start, length = chunks.pop(0)
        body = read(start, length)
        position = 0
        while position + 4 + order <= len(body):
            kind = body[position]
            message_size = int.from_bytes(body[position + 1 : position + 3], "little")
            data_at = position + 4 + order
            data = body[data_at : data_at + message_size]
            if len(data) < message_size:
                break
            messages.append((kind, data))
            if kind == 0x0010 and len(data) >= 16:  # continuation: an "OCHK" chunk
                chunk_at = int.from_bytes(data[:8], "little")
                chunk_length = int.from_bytes(data[8:16], "little")
                chunks.append((chunk_at + 4, chunk_length - 8))  # past "OCHK", before the CRC
            position = data_at + message_size
    return messages


def _rightmost_path(fd: int, index: ChunkIndex) -> list[tuple[int, bytes]]:
    """The nodes from the root down to the last leaf, as they are on disk."""
    nodes = []
    address = index.root
    for _ in range(64):  # a B-tree of 64 levels would index more chunks than exist
        if address >= 1 << 63:  # undefined (no chunk yet), or not an address os.pread takes
            break
        node = os.pread(fd, index.node_size, address)
        if node[:4] != b"TREE" or len(node) < 8 + 2 * _OFFSET:
            break
        nodes.append((address, node))
        level = node[5]
        used = int.from_bytes(node[6:8], "little")
        if level == 0 or used == 0:
            break
        child_at = 8 + 2 * _OFFSET + (used - 1) * (index.key_size + _OFFSET) + index.key_size
        address = int.from_bytes(node[child_at : child_at + _OFFSET], "little")
    return nodes
