"""An undo journal of the HDF5 metadata a structural flush may rewrite in place.

Creating a group or a variable, or adding an attribute, makes HDF5 rewrite object headers,
B-tree nodes, heaps and the superblock in place, and write the new objects they point to
elsewhere; a kill in between leaves the file unreadable (docs/durability.md). Before the
first such change after a sync, :meth:`MetadataJournal.save` keeps the *pre-image* of every
byte of the file below the end of allocation (EOA) of the last sync that no flush of this
session leaves alone for sure -- the superblock, object headers, B-tree nodes but those of
chunk indexes off their rightmost path, local and global heaps, free and leaked space; not
the raw data of unfiltered datasets -- in ``FILE.writebehind-meta``; the next completed
sync voids it. Recovery of a file left open for writing writes a complete journal back
(:func:`apply`).

Why that restores every acknowledged entry (the crash-safety argument):

- Everything the last completed sync's structures consist of lies below its EOA (the EOA
  is written last, in the superblock). After :func:`apply`, every byte below it that is not
  raw data is exactly as that sync left it, whatever the interrupted flush wrote there:
  object headers, indexes and heaps are the old ones, and they point only below the EOA.
  Bytes past the EOA are garbage nothing refers to (recovery then raises the EOA over them).
- Raw data is not journaled, so the argument rests on what a flush does to it. A chunk of
  an *unfiltered* dataset has a fixed address for the life of the dataset: HDF5 rewrites it
  in place, and never frees it -- writebehind never shrinks or deletes a dataset in a flush
  (only recovery shrinks variable-length variables, outside any flush). So no new object
  lands on it, and a rewrite leaves its rows below the committed length with the bytes they
  had (the engine only appends; the rows it rewrites are past the committed length, which
  recovery does not trust). New chunks go to space past the old EOA or to space that was
  free, and free space below the EOA is journaled. The same holds for contiguous storage.
  (A fixed variable whose value a flush rewrites can be left half old, half new, as before:
  that is not an acknowledged entry until the flush returns.)
- Chunks of *filtered* (compressed) datasets move when rewritten and their old space is
  freed and reused within the same session: they are journaled like metadata. A file whose
  journal would exceed :data:`JOURNAL_LIMIT_BYTES` is not journaled; the driver falls back
  to the whole-file rollback copy then.
- Chunk-index nodes off the rightmost path of an unfiltered dataset's index are not
  journaled either: entries are only added at the end of a variable, so HDF5 only rewrites
  the nodes from the root down to the last leaf; a node off that path keeps its bytes for
  the session (the argument in full: ``stable``). The nodes on the path are journaled.
- Which ranges are raw data and index nodes is found by ``stable.StableRanges``, which
  remembers what it found and reads only what was added since, in the datasets of the
  variables the driver names (:meth:`MetadataJournal.note`; its cost follows the change,
  not the file): HDF5 itself, in this process (the library netCDF4 loaded, through ctypes,
  opening the file read-only a second time: HDF5 shares the file netCDF already has open,
  its caches included, and closing our identifier leaves netCDF's alone), names every
  dataset, its filters and its contiguous storage; the chunks are read from the chunk
  indexes on disk, as the last sync left them (chunks HDF5 knows of since lie past the old
  EOA or in space that was free at the sync, which the old structures do not reference,
  so not keeping their old bytes loses nothing). It must run on the writer thread, under
  the library lock.
- A dataset whose only filter is Fletcher32 (the checksum writebehind gives numeric
  variables) keeps its chunks' size, so HDF5 rewrites them in place too: it counts as
  unfiltered.

Format: a header (magic, a random 8-byte nonce, the EOA, a CRC32), the identity of the file
(``sidefiles``: recovery applies the journal only to the file it proves to be), then one
record per range (address, length, the bytes, a CRC32 seeded with the nonce, so records of an
earlier journal in the same file never pass for this one's), then an end marker with the
count. A journal that is incomplete or corrupt is ignored and deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable

from .sidefiles import FileIdentity, close_and_remove, create_exclusive, fsync_directory
from .stable import StableRanges
from .superblock import read_superblock

__all__ = [
    "JOURNAL_LIMIT_BYTES",
    "MetadataJournal",
    "apply",
    "journal_path",
    "load",
    "metadata_ranges",
]

logger = logging.getLogger("writebehind")

JOURNAL_SUFFIX = ".writebehind-meta"
#: A journal larger than this is not written: the driver copies the whole file instead.
JOURNAL_LIMIT_BYTES = 64 << 20
_MAGIC = b"WBMETA2\n"
_HEADER = struct.Struct("<8sQQ")  # magic, nonce, EOA; then a CRC32 of these, the identity
_RECORD = struct.Struct("<QQ")  # address, length; then the bytes and a CRC32
_END = b"WBMEND\n\0"
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def journal_path(path: str) -> str:
    """Where the metadata journal of the file at ``path`` is kept."""
    return path + JOURNAL_SUFFIX


# -- writing ------------------------------------------------------------------------------
class MetadataJournal:
    """Keeps the pre-images of a file's metadata in ``FILE.writebehind-meta`` for
    the length of a flush that changes its structure (on the writer thread, under the
    library lock: it calls HDF5).

    The side file stays open for as long as the store and is voided in place, so that a
    structural flush costs no file creation and no directory fsync after the first. A voided
    journal is fdatasynced before the next durable flush returns: a complete journal must
    never reappear after a power loss once later flushes have moved the file on.
    """

    def __init__(self, path: str, identity: FileIdentity):
        self.path = path
        self._identity = identity
        self._fd = -1
        self._target = ""
        self._valid = False  # the side file holds a complete journal
        self._settled = True  # what the side file holds (valid or void) is on disk
        self.last_size = 0  # bytes of the last journal written (for the benchmarks)
        # What no flush of this session writes (raw data, index nodes off the rightmost
        # path), found anew only where the file changed since the last journal.
        self._stable = StableRanges(path)

    def save(self, durable: bool) -> bool:
        """Write the pre-images of the metadata as the last sync left it; False, writing
        nothing, when that is larger than :data:`JOURNAL_LIMIT_BYTES` or HDF5 cannot say
        where the raw data is (the caller then keeps a rollback copy instead).

        With ``durable`` the journal (and, the first time, its directory entry) is on stable
        storage when this returns, before the flush changes anything.
        """
        superblock = read_superblock(self.path)
        if superblock is None or not self._stable.update():
            return False
        eoa = superblock.eof_in_file
        ranges = self._stable.gaps(eoa)
        if sum(length for _, length in ranges) > JOURNAL_LIMIT_BYTES:
            return False
        with open(self.path, "rb") as file:
            source = file.fileno()
            content = _encode(self._identity, eoa, source, ranges)
        created = self._fd < 0
        if created:
            self._target = journal_path(self.path)
            self._fd = create_exclusive(self._target)
        os.pwrite(self._fd, content, 0)
        os.ftruncate(self._fd, len(content))
        self._valid, self._settled = True, False
        self.last_size = len(content)
        if durable:
            _fdatasync(self._fd)
            self._settled = True
            if created:
                fsync_directory(os.path.dirname(os.path.abspath(self.path)))
        return True

    def note(self, paths: Iterable[str]) -> None:
        """The netCDF variables at ``paths`` were created or written to by the sync that
        just completed: the next :meth:`save` or :meth:`keep_up` looks at their datasets
        again, and at no other (what was found of the others still holds)."""
        self._stable.note(paths)

    def keep_up(self) -> bool:
        """Read what the chunk indexes of the noted variables gained since the last look
        (after a sync that wrote many entries: see the driver), so that the next
        :meth:`save` costs what changed since this call, not since the last structural
        flush; False if HDF5 cannot tell."""
        if self._stable.started and self._stable.advance():
            return True
        return self._stable.update()  # new datasets among the noted: HDF5 finds them

    def void(self, durable: bool) -> None:
        """The sync the journal guarded completed: void it (on disk too if ``durable``)."""
        if self._valid:
            os.pwrite(self._fd, bytes(len(_MAGIC)), 0)
            self._valid, self._settled = False, False
        if durable and not self._settled:
            _fdatasync(self._fd)
            self._settled = True

    def close(self) -> None:
        """Delete the side file (the file was closed: nothing left to undo)."""
        if self._fd >= 0:
            close_and_remove(self._fd, self._target)
            self._fd = -1
        self._valid = False


def metadata_ranges(raw: list[tuple[int, int]], eoa: int) -> list[tuple[int, int]]:
    """The (address, length) ranges of ``[0, eoa)`` that no ``raw`` extent covers."""
    ranges = []
    at = 0
    for address, length in sorted(raw):
        if address > at:
            ranges.append((at, min(address, eoa) - at))
        at = max(at, address + length)
        if at >= eoa:
            break
    if at < eoa:
        ranges.append((at, eoa - at))
    return [(address, length) for address, length in ranges if length > 0]


def _encode(identity: FileIdentity, eoa: int, fd: int, ranges: list[tuple[int, int]]) -> bytes:
    nonce = os.urandom(8)
    seed = zlib.crc32(nonce)
    head = _HEADER.pack(_MAGIC, int.from_bytes(nonce, "little"), eoa)
    parts = [head, struct.pack("<I", zlib.crc32(head)), identity.pack()]
    count = 0
    for address, length in ranges:
        data = os.pread(fd, length, address)
        if not data:
            continue  # the file is shorter than its EOA: nothing there to keep
        head = _RECORD.pack(address, len(data))
        crc = zlib.crc32(data, zlib.crc32(head, seed))  # no copy of the bytes to check them
        parts += [head, data, struct.pack("<I", crc)]
        count += 1
    tail = _END + struct.pack("<Q", count)
    parts += [tail, struct.pack("<I", zlib.crc32(tail, seed))]
    return b"".join(parts)


# -- reading and applying -----------------------------------------------------------------
def parse(data: bytes) -> tuple[FileIdentity, list[tuple[int, bytes]]] | None:
    """The identity and the records of a complete, intact journal; else None."""
    end = _HEADER.size
    if len(data) < end + 4 + FileIdentity.SIZE or not data.startswith(_MAGIC):
        return None
    if zlib.crc32(data[:end]) != struct.unpack_from("<I", data, end)[0]:
        return None
    _, nonce, _ = _HEADER.unpack_from(data)
    identity = FileIdentity.unpack(data[end + 4 : end + 4 + FileIdentity.SIZE])
    if identity is None:
        return None
    seed = zlib.crc32(nonce.to_bytes(8, "little"))
    records = []
    at = end + 4 + FileIdentity.SIZE
    while data[at : at + len(_END)] != _END:
        if at + _RECORD.size > len(data):
            return None
        address, length = _RECORD.unpack_from(data, at)
        stop = at + _RECORD.size + length
        if (
            stop + 4 > len(data)
            or zlib.crc32(data[at:stop], seed) != struct.unpack_from("<I", data, stop)[0]
        ):
            return None
        records.append((address, data[at + _RECORD.size : stop]))
        at = stop + 4
    tail = data[at : at + len(_END) + 8]
    crc = data[at + len(_END) + 8 : at + len(_END) + 12]
    if len(crc) != 4 or zlib.crc32(tail, seed) != struct.unpack("<I", crc)[0]:
        return None
    if struct.unpack_from("<Q", tail, len(_END))[0] != len(records):
        return None
    return identity, records


def load(path: str) -> tuple[FileIdentity, list[tuple[int, bytes]]] | None:
    """The identity and records of the complete metadata journal of ``path``; None if there
    is none, or it is incomplete, corrupt or voided."""
    try:
        with open(journal_path(path), "rb") as journal:
            return parse(journal.read())
    except FileNotFoundError:
        return None


def apply(path: str, fd: int, file_id: str | None = None) -> int:
    """Write back the journal of ``path`` into the file open as ``fd`` if it proves to be
    this file's (``FileIdentity.proves`` with the file's id, None if unknown), then delete
    it; the number of ranges written (0: none, incomplete, voided or another file's)."""
    loaded = load(path)
    count = 0
    if loaded is not None and loaded[0].proves(fd, file_id):
        count = write_back(path, fd, loaded[1])
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal_path(path))
    return count


def write_back(path: str, fd: int, records: list[tuple[int, bytes]]) -> int:
    """Write the pre-images ``records`` back into the file open as ``fd`` and fsync it;
    the number of ranges written (the caller removes the journal after this returns, so a
    kill during it leaves the journal to apply again)."""
    for address, before in records:
        os.pwrite(fd, before, address)
    if records:
        os.fsync(fd)
        logger.warning(
            "writebehind: %s: a flush changing its structure was interrupted; its metadata "
            "(%d ranges, %d bytes) restored from %s",
            path,
            len(records),
            sum(len(before) for _, before in records),
            journal_path(path),
        )
    return len(records)
