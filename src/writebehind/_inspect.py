"""What a NetCDF file (or a Zarr store) holds, for ``writebehind inspect`` and the demo's
closing tree.

The file is read through :class:`~writebehind.NetCDFBackend` (a target that names a Zarr
store or an Icechunk repository, through the backend ``_targets`` names for it) on the
calling thread alone (no store, no writer thread: one short-lived, single-threaded
reader), so the tree shows exactly what a store would see: kind, entries, entry shape,
dtype and units of each variable as writebehind interprets them, and the user's metadata
without writebehind's bookkeeping attributes. Files written by other programs are shown as
a store reads them (an unlimited first dimension makes a variable appendable). A node that
was given metadata but never written is shown too: its parent group keeps that metadata
(in writebehind's ``writebehind_unbound_metadata`` attribute) until a later session writes
the node.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pint

from ._bookkeeping import LENGTH_ATTR, UNBOUND_ATTR
from ._core import pending_attrs, unbound_from_json
from ._errors import DamagedDataError
from ._paths import join
from ._targets import backend_for, is_zarr_target
from .codecs import ATTR_PREFIX, spec_from_attrs
from .codecs.base import Layout
from .codecs.metadata import decode_attrs
from .drivers.base import StorageIODriver
from .drivers.netcdf import NetCDFBackend

__all__ = [
    "FileSummary",
    "GroupSummary",
    "NodeSummary",
    "UnboundSummary",
    "VariableSummary",
    "inspect_file",
    "render_tree",
]


@dataclass
class VariableSummary:
    """One variable as writebehind reads it."""

    path: str
    kind: str  # "appendable" or "fixed"
    entries: int | None  # None for a fixed variable
    entry_shape: tuple[int, ...]
    dtype: str  # numpy dtype name, or "str", "bytes", "dict"
    python_type: str  # what read() gives back (per entry, for appendable variables)
    units: str | None
    metadata: dict[str, Any]
    problem: str | None = None  # why writebehind cannot decode it, if it cannot
    # What reading it whole asks of memory, counted as the driver's check counts it
    # (8 bytes a str, bytes or dict entry); not in to_json().
    nbytes: int = 0

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


@dataclass
class GroupSummary:
    """One group and what it holds."""

    path: str
    metadata: dict[str, Any]
    children: list[NodeSummary] = field(default_factory=list)
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


@dataclass
class UnboundSummary:
    """A node given metadata but never written: not yet a group or a variable.

    A store's repr calls it unbound; its first write makes it one or the other.
    """

    path: str
    metadata: dict[str, Any]
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


NodeSummary = GroupSummary | VariableSummary | UnboundSummary


@dataclass
class FileSummary:
    """A whole file: its size, whether writebehind wrote it, and its root group."""

    file_name: str
    size_bytes: int
    written_by_writebehind: bool
    root: GroupSummary

    def nodes(self) -> list[NodeSummary]:
        """Every node below the root, parents first."""
        out: list[NodeSummary] = []
        stack: list[NodeSummary] = list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            out.append(node)
            if isinstance(node, GroupSummary):
                stack.extend(reversed(node.children))
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (numpy values made plain Python)."""
        return {
            "file": self.file_name,
            "size_bytes": self.size_bytes,
            "written_by_writebehind": self.written_by_writebehind,
            "root": _node_json(self.root),
        }


def inspect_file(file_name: str | os.PathLike[str], *, verify: bool = False) -> FileSummary:
    """Read the structure of ``file_name`` (its data is not read, unless ``verify``).

    With ``verify``, every entry of every variable is read once (in slices of bounded
    size): a variable whose stored bytes fail their checksum, or that cannot be read, gets
    a ``problem`` naming the entries hit.

    Raises
    ------
    FileNotFoundError
        No such file.
    IsADirectoryError
        ``file_name`` is a directory.
    OSError
        The file is not a NetCDF file.
    """
    path = os.fsdecode(file_name)
    driver: StorageIODriver
    if is_zarr_target(path):  # a Zarr store or an Icechunk repository
        made = backend_for(path, "r")
        assert isinstance(made, StorageIODriver)  # a name makes a backend, never a facade
        driver = made
    elif os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a NetCDF file")
    else:
        driver = NetCDFBackend(path, "r")
    driver.open()
    try:
        root_attrs = driver.get_attrs("")
        root = _group("", root_attrs)
        groups = {"": root}
        registry = pint.get_application_registry()
        ours = _has_bookkeeping(root_attrs)
        for record in driver.scan():
            ours = ours or _has_bookkeeping(record.attrs)
            parent = groups[record.path.rpartition("/")[0]]
            if record.is_group:
                group = _group(record.path, record.attrs)
                groups[record.path] = group
                parent.children.append(group)
                continue
            assert record.layout is not None
            variable = _variable(
                record.path,
                record.attrs,
                record.layout,
                record.appendable,
                record.length,
                registry,
            )
            if verify and variable.problem is None:
                variable.problem = _verify(driver, variable)
            parent.children.append(variable)
        size = driver.stored_bytes()
    finally:
        driver.close()
    for group in groups.values():
        # A store ignores what the parent kept for a node written since; so does the tree.
        written = {node.name for node in group.children if not isinstance(node, UnboundSummary)}
        group.children = [
            node
            for node in group.children
            if not (isinstance(node, UnboundSummary) and node.name in written)
        ]
        group.children.sort(key=lambda node: node.name)
    return FileSummary(path, size, ours, root)


#: How much one read of ``_verify`` asks of memory at most.
VERIFY_SLICE_BYTES = 64 << 20


def _verify(driver: StorageIODriver, variable: VariableSummary) -> str | None:
    """Read every entry of ``variable`` once; what is damaged, or None."""
    try:
        if variable.entries is None:
            driver.read_value(variable.path)
            return None
        entry_bytes = max(1, variable.nbytes // max(1, variable.entries))
        step = max(1, VERIFY_SLICE_BYTES // entry_bytes)
        damaged: list[tuple[int, int]] = []
        for start in range(0, variable.entries, step):
            try:
                driver.read_entries(variable.path, start, min(start + step, variable.entries))
            except DamagedDataError as exc:
                damaged.extend(exc.entries)
    except (OSError, MemoryError) as exc:
        return f"cannot be read: {exc}"
    if not damaged:
        return None
    ranges = ", ".join(f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in damaged)
    return f"damaged: entries {ranges} fail their checksum"


def _has_bookkeeping(attrs: dict[str, Any]) -> bool:
    return any(name.startswith(ATTR_PREFIX) for name in attrs)


def _group(path: str, attrs: dict[str, Any]) -> GroupSummary:
    metadata, problem = _metadata(attrs, frozenset())
    group = GroupSummary(path, metadata, problem=problem)
    raw = attrs.get(UNBOUND_ATTR)
    if raw is None:
        return group
    try:
        unbound = unbound_from_json(str(raw))
    except Exception as exc:  # damaged: a store ignores it (with a warning), so show why
        group.problem = group.problem or f"damaged {UNBOUND_ATTR} attribute: {exc}"
        return group
    for child, pending in unbound.items():
        child_metadata, child_problem = _metadata(pending_attrs(pending), frozenset())
        group.children.append(UnboundSummary(join(path, child), child_metadata, child_problem))
    return group


def _variable(
    path: str, attrs: dict[str, Any], layout: Layout, appendable: bool, length: int, registry: Any
) -> VariableSummary:
    entries: int | None = None
    problem = None
    if appendable:
        entries = length
        if LENGTH_ATTR in attrs:
            try:
                entries = min(length, int(attrs[LENGTH_ATTR]))
            except (TypeError, ValueError):
                problem = f"damaged {LENGTH_ATTR} attribute"
    dtype = _layout_dtype(layout)
    python_type = "ndarray"
    units = attrs.get("units") if isinstance(attrs.get("units"), str) else None
    hide: frozenset[str] = frozenset()
    try:
        spec = spec_from_attrs(attrs, layout, registry)
    except Exception as exc:  # FormatError, or a foreign layout no codec reads
        problem = problem or f"writebehind cannot decode it: {exc}"
    else:
        python_type = spec.python
        if spec.codec == "dict":
            dtype = "dict"
        elif spec.logical_dtype:
            dtype = "bool" if spec.logical_dtype == "bool" else np.dtype(spec.logical_dtype).name
        if spec.units is not None:
            units = spec.units
            hide = frozenset({"units"})
    metadata, meta_problem = _metadata(attrs, hide)
    entry_shape = tuple(int(n) for n in layout.shape)
    itemsize = max(1, layout.dtype.itemsize) if layout.storage == "numeric" else 8
    return VariableSummary(
        path,
        "appendable" if appendable else "fixed",
        entries,
        entry_shape,
        dtype,
        python_type,
        units,
        metadata,
        problem or meta_problem,
        nbytes=(1 if entries is None else entries) * math.prod(entry_shape) * itemsize,
    )


def _layout_dtype(layout: Layout) -> str:
    if layout.storage == "string":
        return "str"
    if layout.storage == "bytes":
        return "bytes"
    return str(layout.dtype.name) if layout.dtype.fields is None else str(layout.dtype)


def _metadata(attrs: dict[str, Any], hide: frozenset[str]) -> tuple[dict[str, Any], str | None]:
    try:
        return decode_attrs(attrs, hide), None
    except Exception as exc:  # a damaged type record: show the raw attributes instead
        raw = {k: v for k, v in attrs.items() if not k.startswith(ATTR_PREFIX) and k not in hide}
        return raw, f"metadata types damaged: {exc}"


# -- rendering ---------------------------------------------------------------------------
_HEADER = ("kind", "entries", "entry shape", "dtype", "units")
_UNBOUND_NOTE = " (metadata only, nothing written yet)"


def render_tree(summary: FileSummary) -> str:
    """The tree of groups and variables as text, one line per node, metadata below it."""
    origin = "written by writebehind" if summary.written_by_writebehind else "NetCDF"
    lines: list[tuple[str, tuple[str, ...] | None]] = []  # (tree label, columns or None)

    def add_metadata(node: NodeSummary, prefix: str) -> None:
        items = [f"{k} = {_short(v)}" for k, v in node.metadata.items()]
        if node.problem:
            items.append(f"! {node.problem}")
        bar = "│   " if _has_children(node) else "    "
        lines.extend((prefix + bar + item, None) for item in items)

    def walk(group: GroupSummary, prefix: str) -> None:
        for i, node in enumerate(group.children):
            branch, inner = ("└── ", "    ") if i == len(group.children) - 1 else ("├── ", "│   ")
            if isinstance(node, GroupSummary):
                lines.append((prefix + branch + node.name + "/", None))
            elif isinstance(node, UnboundSummary):
                lines.append((prefix + branch + node.name + _UNBOUND_NOTE, None))
            else:
                lines.append((prefix + branch + node.name, _columns(node)))
            add_metadata(node, prefix + inner)
            if isinstance(node, GroupSummary):
                walk(node, prefix + inner)

    lines.append(("/", None))
    add_metadata(summary.root, "")
    walk(summary.root, "")
    table = [columns for _, columns in lines if columns is not None]
    # A file of groups and metadata alone has no variable lines, so no columns to align.
    label_width = max((len(label) for label, columns in lines if columns is not None), default=0)
    widths = [max(len(row[i]) for row in [_HEADER, *table]) for i in range(len(_HEADER))]
    out = [f"{summary.file_name} ({origin}, {_size(summary.size_bytes)})"]
    if table:
        out.append(" " * label_width + _row(_HEADER, widths))
    for label, columns in lines:
        out.append(label if columns is None else label.ljust(label_width) + _row(columns, widths))
    if not summary.root.children:
        out.append("(no groups or variables)")
    return "\n".join(line.rstrip() for line in out)


def _row(columns: tuple[str, ...], widths: list[int]) -> str:
    kind, entries, shape, dtype, units = columns
    return (
        f"  {kind:<{widths[0]}}  {entries:>{widths[1]}}  {shape:<{widths[2]}}"
        f"  {dtype:<{widths[3]}}  {units}"
    )


def _has_children(node: NodeSummary) -> bool:
    return isinstance(node, GroupSummary) and bool(node.children)


def _columns(var: VariableSummary) -> tuple[str, ...]:
    entries = "" if var.entries is None else str(var.entries)
    if var.dtype in ("str", "bytes", "dict"):
        shape = ""
    else:
        shape = (
            "("
            + ", ".join(str(n) for n in var.entry_shape)
            + ("," if len(var.entry_shape) == 1 else "")
            + ")"
        )
    return (var.kind, entries, shape, var.dtype, var.units or "")


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError  # pragma: no cover


def _short(value: Any, limit: int = 70) -> str:
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, separator=", ")
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _node_json(node: NodeSummary) -> dict[str, Any]:
    if isinstance(node, GroupSummary):
        out: dict[str, Any] = {
            "path": node.path,
            "type": "group",
            "metadata": _plain(node.metadata),
            "children": [_node_json(child) for child in node.children],
        }
    elif isinstance(node, UnboundSummary):
        out = {"path": node.path, "type": "unbound", "metadata": _plain(node.metadata)}
    else:
        out = {
            "path": node.path,
            "type": "variable",
            "kind": node.kind,
            "entries": node.entries,
            "entry_shape": list(node.entry_shape),
            "dtype": node.dtype,
            "python_type": node.python_type,
            "units": node.units,
            "metadata": _plain(node.metadata),
        }
    if node.problem:
        out["problem"] = node.problem
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
