"""Node paths: ``"traj/positions"`` names variable ``positions`` in group ``traj``.

Paths are relative to the file's root group and use ``/`` as separator; the root itself is
``""``. Names are checked against netCDF's own rule (``NC_check_name``) at the call, so a name
the file cannot hold is refused with ``ValueError`` instead of being mangled.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

__all__ = [
    "MAX_NAME_BYTES",
    "check_name",
    "is_url",
    "join",
    "parent",
    "split",
    "split_zarr_target",
]

# NC_MAX_NAME is 256, but netCDF4-python reads a 256-byte name back with bytes after it
# (garbage, or a UnicodeDecodeError), and a file with a 256-byte group name then fails to
# open (netCDF4 1.7.5): 255 is the longest name that comes back.
MAX_NAME_BYTES = 255


def check_name(name: object) -> str:
    """Return ``name`` if netCDF can store it as a group or variable name.

    Raises
    ------
    TypeError
        ``name`` is not a ``str``.
    ValueError
        netCDF cannot hold it: empty, contains ``/`` or a control character, starts with a
        character other than a letter, digit, ``_`` or a non-ASCII character, ends with
        white space, is not in Unicode normal form NFC, or is longer than 256 bytes in UTF-8.
    """
    if not isinstance(name, str):
        raise TypeError(f"a node name must be a str, not {type(name).__name__}")
    problem = _name_problem(name)
    if problem:
        raise ValueError(f"invalid name {name!r}: {problem}")
    return name


def _name_problem(name: str) -> str:
    if not name:
        return "names cannot be empty"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "names must be valid Unicode (no lone surrogates)"
    if len(encoded) > MAX_NAME_BYTES:
        return f"netCDF names are at most {MAX_NAME_BYTES} bytes in UTF-8 ({len(encoded)} given)"
    if unicodedata.normalize("NFC", name) != name:
        return "netCDF stores names in Unicode normal form NFC; normalize the name first"
    first = name[0]
    if not (first.isascii() and (first.isalnum() or first == "_")) and first.isascii():
        return "a name must start with a letter, a digit, '_' or a non-ASCII character"
    for ch in name:
        if ch == "/":
            return "'/' separates path components and cannot be part of a name"
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return "control characters are not allowed"
    if name[-1].isascii() and name[-1].isspace():  # as NC_check_name: ASCII only
        return "a name cannot end with white space"
    return ""


def split(path: str, check: Callable[[str], str] = check_name) -> tuple[str, ...]:
    """Split ``"a/b/c"`` into ``("a", "b", "c")``, checking each name with ``check``.

    A leading ``/`` is accepted (``"/a/b"`` is ``"a/b"``); ``""`` and ``"/"`` are the root.
    """
    if not isinstance(path, str):
        raise TypeError(f"a path must be a str, not {type(path).__name__}")
    stripped = path[1:] if path.startswith("/") else path
    if not stripped:
        return ()
    return tuple(check(part) for part in stripped.split("/"))


def join(parent_path: str, name: str) -> str:
    """The path of child ``name`` of the node at ``parent_path``."""
    return f"{parent_path}/{name}" if parent_path else name


def parent(path: str) -> str:
    """The path of the group holding ``path`` (``""`` for the root's children)."""
    head, _, _ = path.rpartition("/")
    return head


def is_url(target: str) -> bool:
    """Whether a store's location (not a node path) is a URL of object storage, such as
    ``s3://bucket/run.zarr``; ``file://`` and plain paths are local."""
    scheme, sep, _ = target.partition("://")
    return bool(sep) and scheme not in ("", "file")


def split_zarr_target(target: str) -> tuple[str, str]:
    """``(hierarchy, group)``: where a Zarr target's hierarchy is, and the group in it.

    A path through a directory (or prefix) named ``*.zarr`` names a group of that
    hierarchy: ``"ens.zarr/replica-0"`` is ``("ens.zarr", "replica-0")``,
    ``"s3://bucket/ens.zarr/a/b"`` is ``("s3://bucket/ens.zarr", "a/b")``. Any other target
    is a hierarchy of its own (group ``""``). The bucket of a URL is never the hierarchy.
    """
    scheme, sep, rest = target.partition("://")
    if sep:
        head, parts, first = f"{scheme}://", rest.split("/"), int(scheme != "file")
    else:  # a local path: either separator
        head, parts, first = "", target.replace("\\", "/").split("/"), 0
    for index in range(first, len(parts) - 1):  # first: past the bucket of a URL
        if parts[index].endswith(".zarr"):
            group = "/".join(part for part in parts[index + 1 :] if part)
            if group:
                return head + "/".join(parts[: index + 1]), group
    return target, ""
