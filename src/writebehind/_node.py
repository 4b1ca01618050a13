"""StorageInterfaceDirVar (SIDV): a node of the store, reached by attribute or item access.

A node is a variable or a group, decided by its first use: ``write``/``append`` make it a
variable, giving it a child makes it a group. The node itself only navigates and validates;
the work goes to the store's core (checks, encoding) and engine (the queue).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from . import _paths
from ._catalog import GroupEntry, VariableEntry
from ._core import StoreCore
from ._engine import Handle, Staging

__all__ = ["RESERVED_NAMES", "GroupInfo", "NodeBase", "StorageInterfaceDirVar", "VariableInfo"]

#: Names that attribute access never turns into children (use ``node["name"]`` for those).
RESERVED_NAMES = frozenset(
    {
        "write",
        "append",
        "read",
        "add_metadata",
        "read_metadata",
        "variable",
        "directory",
        "path",
        "predecessor",
        "name",
        "bound_target",
        "to_xarray",
    }
)


class VariableInfo(NamedTuple):
    """What a bound variable node reports as its ``variable`` (and ``bound_target``)."""

    path: str
    appendable: bool
    codec: str
    python_type: str
    entry_shape: tuple[int, ...]
    dtype: str
    units: str | None


class GroupInfo(NamedTuple):
    """What a bound group node reports as its ``directory`` (and ``bound_target``)."""

    path: str


class NodeBase:
    """Navigation shared by the sync and async nodes."""

    __slots__ = ("_children", "_core", "_name", "_path", "_predecessor", "_store", "_var")
    _core: StoreCore

    def __init__(
        self,
        name: str,
        core: Any,
        predecessor: NodeBase | None = None,
        *,
        store: object = None,
    ):
        """A node at ``name`` under ``predecessor`` (the top level when None).

        ``core`` is the store's StoreCore, or, as in openmmtools'
        ``StorageInterfaceDirVar(name, storage_interface, predecessor=None)``, the store
        itself.
        """
        if not isinstance(core, StoreCore):
            store_core = getattr(core, "_core", None)
            if not isinstance(store_core, StoreCore):
                raise TypeError(
                    f"{type(self).__name__}() needs a store (StorageInterface), not "
                    f"{type(core).__name__}"
                )
            core, store = store_core, core
        if predecessor is not None and predecessor._core is not core:
            raise ValueError(f"the predecessor of {name!r} belongs to another store")
        self._name = name
        self._core = core
        self._predecessor = predecessor
        # Keeps the store alive (and so its file open) while any of its nodes is in use.
        self._store: object = store if predecessor is None else predecessor._store
        parent_path = predecessor._path if predecessor is not None else ""
        self._path: str = _paths.join(parent_path, name) if name else parent_path
        self._children: dict[str, NodeBase] = {}
        #: The staging state this node appends to, once it did (the append path's).
        self._var: Staging | None = None

    # -- navigation ------------------------------------------------------------------
    def _child(self, name: str) -> Any:
        child = self._children.get(name)
        if child is None:
            self._core.driver.check_name(name)  # the backend's rule
            node = self._core.catalog.lookup(self._path)
            if isinstance(node, VariableEntry):
                raise AttributeError(
                    f"{self._path!r} is a variable: it has no child {name!r} "
                    "(a variable cannot be used as a group)"
                )
            child = type(self)(name, self._core, self)
            self._children[name] = child
        return child

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._child(name)

    def __getitem__(self, path: str) -> Any:
        node: Any = self
        for name in _paths.split(path, self._core.driver.check_name):
            node = node._child(name)
        return node

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        try:
            parts = _paths.split(path, self._core.driver.check_name)
        except ValueError:
            return False
        full = "/".join((self._path, *parts)) if self._path else "/".join(parts)
        return full in self._core.catalog

    def __iter__(self) -> Iterator[str]:
        return iter(self._core.catalog.children(self._path))

    def __len__(self) -> int:
        return self._core.length(self._path)

    def __repr__(self) -> str:
        node = self._core.catalog.get(self._path)
        kind = "variable" if isinstance(node, VariableEntry) else "group" if node else "unbound"
        return f"<{type(self).__name__} {self._path or '/'!r} ({kind})>"

    def __dir__(self) -> list[str]:
        return sorted({*RESERVED_NAMES, *self._core.catalog.children(self._path)})

    # -- properties as in openmmtools ---------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    @property
    def predecessor(self) -> Any:
        """The parent node; None for a top-level node, as in openmmtools."""
        parent = self._predecessor
        return None if parent is None or not parent._name else parent

    @property
    def variable(self) -> VariableInfo | None:
        node = self._core.catalog.lookup(self._path)
        if not isinstance(node, VariableEntry):
            return None
        spec = node.spec
        return VariableInfo(
            node.path,
            node.appendable,
            spec.codec,
            spec.python,
            spec.layout.shape,
            spec.logical_dtype or spec.layout.storage,
            spec.units,
        )

    @property
    def directory(self) -> GroupInfo | bool | None:
        node = self._core.catalog.lookup(self._path)
        if isinstance(node, GroupEntry):
            return GroupInfo(node.path)
        if node is None and self._children:
            return True
        return None

    @property
    def bound_target(self) -> VariableInfo | GroupInfo | None:
        variable = self.variable
        if variable is not None:
            return variable
        directory = self.directory
        return directory if isinstance(directory, GroupInfo) else None

    def _variable_for_append(self, data: Any) -> Staging:
        var = self._var
        if var is None:
            var = self._core.append_target(self._path, data)
            self._var = var
        return var


class StorageInterfaceDirVar(NodeBase):
    """A group or variable of a :class:`~writebehind.StorageInterface`.

    Not meant to be created directly: reach it as ``store.traj.positions`` or
    ``store["traj/positions"]``.
    """

    __slots__ = ()

    def write(self, data: Any, at_index: int | None = None) -> Handle:
        """Store ``data`` as the variable's value; with ``at_index``, overwrite that entry.

        Returns once ``data`` is checked and copied; the disk work happens behind.

        Raises
        ------
        TypeError, ValueError
            ``data`` cannot be stored, or does not match the variable's kind, shape,
            dtype; ``write`` without ``at_index`` on an appendable variable.
        OSError
            ``at_index`` on a variable with no entries.
        AttributeError
            The node is a group.
        BackgroundWriteError, StoreClosedError, ReadOnlyError
            The store failed, is closed, or is read-only.
        """
        core = self._core
        prepared = core.write_op(self._path, data, at_index)
        if prepared.op is not None:
            return Handle(core.engine, core.engine.enqueue(prepared.op))
        assert prepared.seq is not None
        return Handle(core.engine, prepared.seq)

    def append(self, data: Any) -> Handle:
        """Add ``data`` as the next entry of the variable (created on the first append).

        Raises
        ------
        TypeError, ValueError
            ``data`` cannot be stored or does not match the earlier entries.
        AttributeError
            The node is a group.
        BackgroundWriteError, StoreClosedError, ReadOnlyError
            The store failed, is closed, or is read-only.
        """
        var = self._var
        if var is None:
            var = self._variable_for_append(data)
        # A value of the variable's plain type (a float into float64) has nothing to check.
        payload = data if type(data) is var.unchecked_type else var.encode(data)
        return self._core.engine.append(var, payload)

    def read(self, at_index: int | slice | None = None) -> Any:
        """The variable's value; with ``at_index`` (int or slice) only those entries.

        Waits until every operation enqueued before it is applied.

        Raises
        ------
        KeyError
            No variable at this path.
        AttributeError
            The node is a group.
        ValueError
            ``at_index`` is out of range, or given for a fixed variable.
        BackgroundWriteError, StoreClosedError
            The store failed or is closed.
        """
        future, decode = self._core.read_call(self._path, at_index)
        return decode(self._core.engine.result(future))

    def add_metadata(self, name: str, value: Any) -> None:
        """Set the attribute ``name``; buffered until the node exists in the file.

        Raises
        ------
        TypeError, ValueError
            The name or value cannot be stored as an attribute. ``ValueError`` also for
            ``units``, ``scale_factor`` and ``add_offset`` on a variable or a node not
            written yet: a variable's value owns them (a quantity its units).
        BackgroundWriteError, StoreClosedError, ReadOnlyError
            The store failed, is closed, or is read-only.
        """
        self._core.add_metadata(self._path, name, value)

    def read_metadata(self) -> dict[str, Any]:
        """The user's metadata on this node (writebehind's bookkeeping left out)."""
        future, decode = self._core.read_metadata_call(self._path)
        return decode(self._core.engine.result(future))

    def to_xarray(self) -> Any:
        """This group as an ``xarray.Dataset`` (or variable as a DataArray); needs xarray."""
        from ._interop import to_xarray

        return to_xarray(self._core, self._path)
