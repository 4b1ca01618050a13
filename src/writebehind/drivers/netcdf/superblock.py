"""The HDF5 superblock: the fields crash recovery reads and rewrites, and its checksum.

Versions 2 and 3 (what netCDF-4 writes today) end with a Jenkins lookup3 checksum of the
bytes before it; versions 0 and 1 have none. See the HDF5 file format specification,
"Superblock".
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ..._errors import RecoveryError

__all__ = ["HDF5_SIGNATURE", "Superblock", "lookup3", "read_superblock"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SIGNATURE_OFFSETS = (0, *(512 << n for n in range(12)))  # a user block may precede it


@dataclass(frozen=True)
class Superblock:
    """The fields of an HDF5 superblock that recovery reads or rewrites."""

    offset: int  # where the superblock starts in the file
    version: int
    offset_size: int
    flags: int  # file consistency flags: non-zero while a writer has the file open
    base_address: int
    eof_address: int  # end of allocation, relative to base_address
    raw: bytes  # every byte of it, as read

    @property
    def eof_in_file(self) -> int:
        """The end of allocation as an absolute position in the file."""
        return self.base_address + self.eof_address

    def with_eof(self, eof_in_file: int) -> bytes:
        """The superblock's bytes with the flags cleared and the EOA set (checksum redone)."""
        o = self.offset_size
        raw = bytearray(self.raw)
        eof = (eof_in_file - self.base_address).to_bytes(o, "little")
        if self.version >= 2:
            raw[11] = 0
            raw[12 + 2 * o : 12 + 3 * o] = eof
            raw[12 + 4 * o : 16 + 4 * o] = struct.pack("<I", lookup3(bytes(raw[: 12 + 4 * o])))
        else:
            raw[20:24] = bytes(4)
            start = _v01_eof_offset(self.version, o)
            raw[start : start + o] = eof
        return bytes(raw)


def _v01_eof_offset(version: int, offset_size: int) -> int:
    # version 0: 24 bytes of fixed fields, version 1: 28; then base, free-space, EOF addresses
    return (24 if version == 0 else 28) + 2 * offset_size


def read_superblock(path: str) -> Superblock | None:
    """The superblock of the HDF5 file at ``path``; None if it is not an HDF5 file.

    Raises
    ------
    RecoveryError
        The signature is there but the superblock is damaged (a bad checksum or an unknown
        version): no repair is attempted on such a file.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        for offset in _SIGNATURE_OFFSETS:
            if offset + len(HDF5_SIGNATURE) > size:
                return None
            file.seek(offset)
            head = file.read(96)
            if head.startswith(HDF5_SIGNATURE):
                return _parse_superblock(path, offset, head)
    return None


def _parse_superblock(path: str, offset: int, head: bytes) -> Superblock:
    if len(head) < 12:
        raise RecoveryError(f"{path!r}: the HDF5 superblock is cut short")
    version = head[8]
    if version >= 2:
        if version > 3:
            raise RecoveryError(f"{path!r}: HDF5 superblock version {version} is not known")
        o = head[9]
        size = 16 + 4 * o
        if o not in (2, 4, 8) or len(head) < size:
            raise RecoveryError(f"{path!r}: the HDF5 superblock is damaged")
        raw = head[:size]
        (stored,) = struct.unpack("<I", raw[size - 4 :])
        if lookup3(raw[: size - 4]) != stored:
            raise RecoveryError(f"{path!r}: the HDF5 superblock checksum does not match")
        base = int.from_bytes(raw[12 : 12 + o], "little")
        eof = int.from_bytes(raw[12 + 2 * o : 12 + 3 * o], "little")
        return Superblock(offset, version, o, raw[11], base, eof, raw)
    o = head[13]
    if o not in (2, 4, 8):
        raise RecoveryError(f"{path!r}: the HDF5 superblock is damaged")
    eof_at = _v01_eof_offset(version, o)
    base_at = eof_at - 2 * o
    raw = head[: eof_at + o]
    (flags,) = struct.unpack("<I", raw[20:24])
    base = int.from_bytes(raw[base_at : base_at + o], "little")
    eof = int.from_bytes(raw[eof_at : eof_at + o], "little")
    return Superblock(offset, version, o, flags, base, eof, raw)


_MASK = 0xFFFFFFFF
#: The rotation counts of lookup3.c's ``mix`` and ``final`` macros, in their order.
_MIX_ROTATIONS = (4, 6, 8, 16, 19, 4)
_FINAL_ROTATIONS = (14, 11, 25, 16, 4, 14, 24)


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _add_words(abc: list[int], block: bytes) -> None:
    """Add the three little-endian 32-bit words of a 12-byte ``block`` to ``a, b, c``."""
    for i in range(3):
        abc[i] = (abc[i] + int.from_bytes(block[4 * i : 4 * i + 4], "little")) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum of HDF5 metadata.

    lookup3.c's ``mix`` and ``final`` macros each repeat one step with the roles of ``a``,
    ``b`` and ``c`` rotated; here each is that step in a loop over the macro's rotation
    counts (``abc`` is ``[a, b, c]``).
    """
    length = len(data)
    abc = [(0xDEADBEEF + length + initval) & _MASK] * 3
    pos = 0
    while length > 12:
        _add_words(abc, data[pos : pos + 12])
        for step, k in enumerate(_MIX_ROTATIONS):
            # mix: a -= c; a ^= rot(c, 4); c += b; then b -= a; b ^= rot(a, 6); a += c...
            x, y, z = step % 3, (step + 1) % 3, (step + 2) % 3
            abc[x] = ((abc[x] - abc[z]) & _MASK) ^ _rot(abc[z], k)
            abc[z] = (abc[z] + abc[y]) & _MASK
        length -= 12
        pos += 12
    if length == 0:
        return abc[2]
    _add_words(abc, data[pos:] + bytes(12 - length))
    for step, k in enumerate(_FINAL_ROTATIONS):
        # final: c ^= b; c -= rot(b, 14); then a ^= c; a -= rot(c, 11); then b ^= a...
        x, y = (step + 2) % 3, (step + 1) % 3
        abc[x] = ((abc[x] ^ abc[y]) - _rot(abc[y], k)) & _MASK
    return abc[2]
