"""The catalog of one open store: its groups and variables, the metadata kept for nodes not
written yet, and the entries the file holds damaged.

One object owns all three (``StoreCore.catalog``); the core, the nodes, the facade and the
xarray export ask it rather than reach into its dicts. It has no lock of its own: it is
guarded by the engine's (``Engine.lock``), because binding a variable changes the catalog
and enqueues the variable's creation in one critical section, so no thread sees one without
the other. Each method says whether it takes the lock or expects it held.

A catalog entry does not change once made. What changes with every append (the length, the
open chunk, the staging buffers) is the variable's staging state, which the engine owns
(``_engine.Staging``) and the entry points to: the append path works on that alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from . import _paths
from ._errors import FormatError
from .codecs.base import Layout

__all__ = ["Catalog", "GroupEntry", "Metadata", "VariableEntry"]

#: Metadata kept for a node until it exists: ``{name: (stored value, type tag)}``.
Metadata = dict[str, tuple[Any, "str | None"]]


class _Counted(Protocol):
    """What an entry needs of its staging state (``_engine.Staging``)."""

    length: int


class _Guarded(Protocol):
    """The object whose lock guards the catalog (the engine; it can replace its lock)."""

    lock: Any


class GroupEntry:
    """A group the store knows of (in the file or enqueued for creation)."""

    __slots__ = ("children", "path")

    def __init__(self, path: str):
        self.path = path
        self.children: set[str] = set()


class VariableEntry:
    """What the catalog knows of one variable; fixed once the variable is bound."""

    __slots__ = ("appendable", "encode", "layout", "numeric", "path", "spec", "staging")

    def __init__(
        self,
        path: str,
        spec: Any,
        appendable: bool,
        encode: Callable[[Any], Any],
        staging: _Counted | None = None,
    ) -> None:
        self.path = path
        self.spec = spec
        self.layout: Layout = spec.layout
        self.appendable = appendable
        self.numeric = self.layout.storage == "numeric"
        self.encode = encode
        #: The engine's staging state of an appendable variable (None for a fixed one).
        self.staging = staging

    @property
    def length(self) -> int:
        """Entries of an appendable variable, pending ones included (read it under the lock)."""
        return 0 if self.staging is None else self.staging.length


Entry = GroupEntry | VariableEntry


class Catalog:
    """The nodes of one store, the metadata of nodes not bound yet, and damaged entries."""

    __slots__ = ("_broken", "_guard", "_nodes", "_pending", "unbound_on_disk")

    def __init__(self, guard: _Guarded) -> None:
        self._guard = guard
        self._nodes: dict[str, Entry] = {"": GroupEntry("")}
        self._pending: dict[str, Metadata] = {}  # of nodes not yet bound
        self._broken: dict[str, FormatError] = {}  # entries of the file it cannot use
        #: ``UNBOUND_ATTR`` of each group as the file holds it (written at close by
        #: ``StoreCore.materialize_pending_metadata`` only when it changed).
        self.unbound_on_disk: dict[str, str] = {}

    @property
    def lock(self) -> Any:
        """The lock that guards the catalog: the engine's (a forked child gets a new one)."""
        return self._guard.lock

    # -- reading (no lock needed: one dict look-up is atomic) -----------------------------
    def get(self, path: str) -> Entry | None:
        """The entry at ``path``; None if none (a damaged one included)."""
        return self._nodes.get(path)

    def lookup(self, path: str) -> Entry | None:
        """The entry at ``path``; None if none. Raises the FormatError of a damaged one."""
        broken = self._broken.get(path)
        if broken is not None:
            raise broken
        return self._nodes.get(path)

    def __contains__(self, path: object) -> bool:
        return path in self._nodes or path in self._broken

    def is_broken(self, path: str) -> bool:
        return path in self._broken

    def broken_paths(self) -> list[str]:
        """The paths of the damaged entries, sorted."""
        return sorted(self._broken)

    # -- reading under the lock (takes it) ----------------------------------------------
    def children(self, path: str) -> list[str]:
        """The names of the children of group ``path``, sorted ([] if not a group)."""
        with self.lock:
            node = self._nodes.get(path)
            if isinstance(node, GroupEntry):
                return sorted(node.children)
        return []

    def paths(self) -> list[str]:
        """Every node's path but the root's, sorted."""
        with self.lock:
            paths = [p for p in self._nodes if p]
        return sorted(paths)

    def pending_metadata(self, path: str) -> Metadata:
        """A copy of the metadata kept for ``path``, not bound yet."""
        with self.lock:
            return dict(self._pending.get(path, {}))

    # -- changing (lock held, or before the store is shared: the open) -------------------
    def add_group(self, path: str) -> GroupEntry:
        group = GroupEntry(path)
        self._link(path)
        self._nodes[path] = group
        return group

    def add_variable(self, var: VariableEntry) -> None:
        self._link(var.path)
        self._nodes[var.path] = var

    def add_broken(self, path: str, error: FormatError) -> None:
        """Record ``path`` as an entry of the file that cannot be used (lookup raises it)."""
        self._link(path)
        self._broken[path] = error

    def _link(self, path: str) -> None:
        parent = self._nodes.get(_paths.parent(path))
        if isinstance(parent, GroupEntry):
            parent.children.add(path.rpartition("/")[2])

    def buffer_metadata(self, path: str, metadata: Metadata) -> None:
        """Keep ``metadata`` for ``path`` until it is bound (later names win)."""
        self._pending.setdefault(path, {}).update(metadata)

    def take_pending_metadata(self, path: str) -> Metadata:
        """The metadata kept for ``path``, which is being bound now (it is kept no more)."""
        return self._pending.pop(path, {})

    def forget_metadata_of_bound(self) -> None:
        """Drop the kept metadata of nodes that exist (bound in a later session, at open)."""
        for path in [p for p in self._pending if p in self]:
            del self._pending[path]

    def unbound(self) -> list[tuple[str, Metadata]]:
        """The kept metadata of the nodes still not bound, by path, sorted."""
        pending = self._pending
        return [(path, pending[path]) for path in sorted(pending) if path not in self._nodes]
