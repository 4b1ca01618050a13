"""openmmtools.storage's synchronous driver API, kept for code written against it.

openmmtools' ``NetCDFIODriver`` was used directly too: ``driver.create_storage_variable(path,
int).write(4)``, ``driver.get_directory("a/b")``, ``driver.ncfile``. Here these methods own no
write logic of their own. A variable handed out by the driver delegates to the store node at
its path: the node of the store that owns the driver if one is open, otherwise of a *private*
store the driver opens over itself on first use. Either way every netCDF call still happens on
that store's one writer thread, with the same checks, codecs and file layout as
``store.a.b.write(x)``.

Raw netCDF objects (``ncfile``, the group ``get_directory`` returns) are handed out only after
the owning store has applied everything enqueued before, so legacy code that inspects them sees
what it wrote. Touching them while the store keeps writing is the caller's responsibility:
netCDF-C is not thread-safe.

``sync()`` and ``close()`` are also methods of the driver contract, which the engine calls on
its writer thread; :class:`~writebehind.NetCDFIODriver` asks :meth:`LegacyDriverMixin.\
_sync_from_user_code` and :meth:`~LegacyDriverMixin._close_from_user_code` first, and they only
act when the caller is user code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pint

from .. import _paths
from .._errors import ReadOnlyError
from ..codecs.openmm_units import is_openmm_quantity_class

if TYPE_CHECKING:
    from .._core import StoreCore
    from .._engine import Engine, Handle
    from .._node import StorageInterfaceDirVar
    from .._store import StorageInterface

__all__ = ["LegacyDriverMixin", "LegacyStorageVariable"]

#: Types accepted as ``type_key`` by ``create_storage_variable`` (and Quantity classes of
#: pint and openmm.unit).
LEGACY_TYPE_KEYS: tuple[type, ...] = (bool, int, float, str, bytes, list, tuple, dict, np.ndarray)


def _normalize(path: str) -> str:
    """``"/a//b/"`` -> ``"a/b"`` as openmmtools did, each name checked against netCDF's rule."""
    if not isinstance(path, str):
        raise TypeError(f"a path must be a str, not {type(path).__name__}")
    return "/".join(_paths.check_name(part) for part in path.split("/") if part)


def _instance_check_type(type_key: Any) -> type | tuple[type, ...]:
    """The type a value given to a variable of ``type_key`` must be an instance of."""
    if isinstance(type_key, type) and issubclass(type_key, pint.Quantity):
        # Any registry's quantity: the store converts to its own registry's units.
        return pint.Quantity
    if is_openmm_quantity_class(type_key):  # openmmtools' type_key: stored as pint's
        return (type_key, pint.Quantity)
    if type_key is list or type_key is tuple:
        return Iterable  # as openmmtools' NCIterable; the store's own checks then apply
    if type_key in LEGACY_TYPE_KEYS:
        return type_key
    names = ", ".join(t.__name__ for t in LEGACY_TYPE_KEYS)
    raise KeyError(
        f"No known codec for type_key {type_key!r}: writebehind stores {names}, pint "
        "and openmm.unit Quantity classes; set_codec cannot add others"
    )


class LegacyStorageVariable:
    """What ``NetCDFIODriver.create_storage_variable`` and ``get_storage_variable`` return.

    openmmtools returned a codec bound to the variable; this object keeps only the path (and
    the type its values must have) and hands each call to the store node at that path, so it
    has the node's write-behind semantics: ``write`` and ``append`` return once the value is
    checked and copied, ``read`` waits for the writes it must see.
    """

    __slots__ = ("_check_type", "_driver", "_path", "_type_key")

    def __init__(self, driver: LegacyDriverMixin, path: str, type_key: Any = None):
        self._driver = driver
        self._path = path
        self._type_key = type_key
        self._check_type = None if type_key is None else _instance_check_type(type_key)

    @property
    def path(self) -> str:
        return self._path

    @property
    def type_key(self) -> Any:
        """The type given to ``create_storage_variable`` (None if found by
        ``get_storage_variable``: then the stored variable's own checks apply alone)."""
        return self._type_key

    def _node(self) -> StorageInterfaceDirVar:
        return self._driver._legacy_node(self._path)

    def _check(self, data: Any) -> None:
        if self._check_type is not None and not isinstance(data, self._check_type):
            raise TypeError(
                f"{self._path!r} was created for {self._type_key.__name__} values "
                f"(create_storage_variable), not {type(data).__name__}"
            )

    def write(self, data: Any, at_index: int | None = None) -> Handle:
        """``StorageInterfaceDirVar.write`` at this path, after the type check.

        Raises
        ------
        TypeError
            ``data`` is not an instance of the variable's ``type_key``; or as the node's
            ``write`` (shape, dtype, kind, ``at_index`` errors).
        """
        self._check(data)
        return self._node().write(data, at_index)

    def append(self, data: Any) -> Handle:
        """``StorageInterfaceDirVar.append`` at this path, after the type check."""
        self._check(data)
        return self._node().append(data)

    def read(self, at_index: int | slice | None = None) -> Any:
        """``StorageInterfaceDirVar.read`` at this path (KeyError if nothing was written)."""
        return self._node().read(at_index)

    def add_metadata(self, name: str, value: Any) -> None:
        """Set an attribute of the variable; kept until its first write creates it."""
        self._node().add_metadata(name, value)

    def read_metadata(self) -> dict[str, Any]:
        """The user's attributes of the variable."""
        return self._node().read_metadata()

    def __repr__(self) -> str:
        key = "any" if self._type_key is None else self._type_key.__name__
        return f"<LegacyStorageVariable {self._path!r} of {key} in {self._driver.file_name!r}>"


class LegacyDriverMixin:
    """Methods of openmmtools' NetCDFIODriver beyond the driver contract."""

    _owner: Any  # weakref to the Engine of the store using this driver (set by StoreCore)
    _owner_core: Any  # weakref to that store's StoreCore (set by StoreCore)
    _dataset: Any
    _nodes: dict[str, Any]
    _access_mode: str | None

    if TYPE_CHECKING:

        @property
        def file_name(self) -> str: ...

        @property
        def read_only(self) -> bool: ...

        def _ds(self) -> Any: ...

        def _node(self, path: str) -> Any: ...

    def _init_legacy(self) -> None:
        self._owner = None
        self._owner_core = None
        self._private_store: StorageInterface | None = None
        self._legacy_root: StorageInterfaceDirVar | None = None
        self._legacy_variables: dict[str, LegacyStorageVariable] = {}
        self._legacy_lock = threading.RLock()

    # -- which store does the work -------------------------------------------------------
    def _live_engine(self) -> Engine | None:
        """The engine of the last store that used this driver, while it exists."""
        ref = self._owner
        return ref() if ref is not None else None

    def _is_user_thread(self, engine: Engine) -> bool:
        return threading.current_thread() is not engine._thread

    def _open_owner_core(self) -> StoreCore | None:
        ref = self._owner_core
        core = ref() if ref is not None else None
        if core is None or core.engine.closed:
            return None
        return core

    def _legacy_core(self) -> StoreCore:
        """The core of the open store using this driver, opening a private one if none is."""
        core = self._open_owner_core()
        if core is not None:
            return core
        with self._legacy_lock:
            core = self._open_owner_core()
            if core is not None:
                return core
            if self._owner is not None:
                self._stop_truncating()  # a store opened the file before: do not lose it
            from .._store import StorageInterface

            self._private_store = StorageInterface(self)  # type: ignore[arg-type]
            return self._private_store._core

    def _legacy_node(self, path: str) -> StorageInterfaceDirVar:
        core = self._legacy_core()
        root = self._legacy_root
        if root is None or root._core is not core:
            from .._node import StorageInterfaceDirVar

            root = StorageInterfaceDirVar("", core)
            self._legacy_root = root
        return root[path] if path else root

    def _stop_truncating(self) -> None:
        """Reopen in ``'a'`` what an earlier open in ``'w'`` created."""
        if self._access_mode == "w" and os.path.exists(self.file_name):
            self._access_mode = "a"

    def _release_private_store(self) -> None:
        """Close the private store so that a store the user opens can own the file.

        Called by StoreCore before it takes the driver.
        """
        with self._legacy_lock:
            private, self._private_store = self._private_store, None
            if private is None or private.closed:
                return
            private.close()
            self._stop_truncating()

    # -- contract methods called from user code ----------------------------------------
    def _sync_from_user_code(self, durable: bool) -> bool:
        """openmmtools' ``sync()``: flush the owning store. False if the engine is calling."""
        engine = self._live_engine()
        if engine is None or not self._is_user_thread(engine):
            return False
        if engine.closed:
            engine.close()  # already closed or closing: this only waits for the writer
        else:
            engine.flush(durable)
        return True

    def _close_from_user_code(self) -> bool:
        """openmmtools' ``close()``: drain and close the owning store. False if the engine
        is calling (the contract's close)."""
        engine = self._live_engine()
        if engine is None or not self._is_user_thread(engine):
            return False
        with self._legacy_lock:
            private = self._private_store
            if private is not None and private._core.engine is engine:
                self._private_store = None
                private.close()
                self._stop_truncating()
                return True
        core = self._open_owner_core()
        try:
            if core is not None:
                core.materialize_pending_metadata()  # as StorageInterface.close does
        finally:
            engine.close()  # drains everything enqueued, closes the file on the writer
        return True

    def _drain(self) -> None:
        """Wait until the owning store has applied everything enqueued (from user code)."""
        engine = self._live_engine()
        if engine is None or not self._is_user_thread(engine):
            return
        if engine.closed:
            engine.close()  # already closed or closing: this only waits for the writer
            return
        engine.run("drain", lambda: None)

    # -- openmmtools' driver API -----------------------------------------------------------
    @property
    def ncfile(self) -> Any:
        """The ``netCDF4.Dataset``, once the owning store has applied everything enqueued.

        None while no file is open (no store uses the driver, it was closed, or nothing has
        been written yet to a file that did not exist), as in openmmtools. Using it while
        the store keeps writing is the caller's responsibility (netCDF-C is not
        thread-safe).
        """
        self._drain()
        return self._dataset

    def get_directory(self, path: str, create: bool = True) -> Any:
        """The ``netCDF4.Group`` at ``path`` (the Dataset for ``'/'``), created as needed.

        Raises
        ------
        KeyError
            ``create=False`` and there is no group at ``path``.
        AttributeError
            A part of ``path`` is a variable.
        ValueError
            A name netCDF cannot hold.
        ReadOnlyError
            The group is missing and the driver is read-only.
        """
        from .._engine import GroupState

        path = _normalize(path)
        core = self._legacy_core()
        engine = core.engine
        if path:
            node = core.lookup(path)
            if node is None:
                if not create:
                    raise KeyError(f"no group {path!r} in {self.file_name!r}")
                core.check_writable(path)
                with engine.lock:
                    engine.check_usable()
                    core._ensure_groups(path + "/_")  # every group of path, not a child
            elif not isinstance(node, GroupState):
                raise AttributeError(f"{path!r} is a variable, not a group")
        return engine.run("get directory", lambda: self._node(path) if path else self._ds(), path)

    def create_storage_variable(self, path: str, type_key: Any) -> LegacyStorageVariable:
        """A variable at ``path`` whose values must be instances of ``type_key``.

        Nothing is created in the file until its first ``write`` or ``append``.

        Raises
        ------
        KeyError
            ``type_key`` is not a type writebehind stores.
        AttributeError
            ``path`` is a group.
        ValueError
            A name netCDF cannot hold, or ``path`` is the root.
        """
        from .._engine import GroupState

        path = _normalize(path)
        if not path:
            raise ValueError("a variable needs a name: the root '/' is a group")
        variable = LegacyStorageVariable(self, path, type_key)
        if isinstance(self._legacy_core().lookup(path), GroupState):
            raise AttributeError(f"{path!r} is a group, not a variable")
        with self._legacy_lock:
            self._legacy_variables[path] = variable
        return variable

    def get_storage_variable(self, path: str) -> LegacyStorageVariable:
        """The variable at ``path``: one made by ``create_storage_variable`` or in the file.

        Raises
        ------
        KeyError
            No such variable (a group at ``path`` is not a variable either).
        """
        from .._engine import VarState

        path = _normalize(path)
        with self._legacy_lock:
            known = self._legacy_variables.get(path)
        if known is not None:
            return known
        if not path or not isinstance(self._legacy_core().lookup(path), VarState):
            raise KeyError(f"No variable found at {path!r} in {self.file_name!r}")
        variable = LegacyStorageVariable(self, path)
        with self._legacy_lock:
            return self._legacy_variables.setdefault(path, variable)

    def add_metadata(self, name: str, value: Any, path: str = "/") -> None:
        """Set the attribute ``name`` of the group or variable at ``path`` (root by default).

        Raises
        ------
        KeyError
            Nothing is known at ``path``: create it first with ``get_directory`` or
            ``create_storage_variable`` (as in openmmtools).
        ValueError
            ``name`` is ``units``, ``scale_factor`` or ``add_offset`` and ``path`` is a
            variable: its value owns them (see ``StorageInterfaceDirVar.add_metadata``).
        """
        path = _normalize(path)
        core = self._legacy_core()
        if path and core.lookup(path) is None:
            with self._legacy_lock:
                known = path in self._legacy_variables
            if not known:
                raise KeyError(
                    f"Cannot add metadata at {path!r}: nothing is there. Create it first "
                    "with get_directory or create_storage_variable."
                )
        core.add_metadata(path, name, value)

    def set_codec(self, type_key: Any, codec: Any) -> None:
        """Not supported: writebehind's codecs are not replaceable per driver.

        Raises
        ------
        NotImplementedError
            Always. openmmtools' codecs are classes that create and write netCDF variables
            themselves, on the caller's thread; writebehind's are pure functions picked from
            the value, and only the writer thread touches the file. Convert a custom type to
            a dict, array or quantity before storing it.
        """
        raise NotImplementedError(
            f"set_codec({type_key!r}, ...) is not supported: writebehind picks a pure codec "
            "from each value and only its writer thread touches the file, so openmmtools-style "
            "codec classes that write netCDF variables themselves cannot be plugged in. Store "
            "custom types as a dict, numpy array or pint quantity instead."
        )

    def check_scalar_dimension(self) -> None:
        """Create the root dimension ``scalar`` (length 1) if missing."""
        self._legacy_dimension("scalar", 1)

    def check_iterable_dimension(self, length: int = 0) -> None:
        """Create the root dimension ``iterable<length>`` if missing (0: unlimited).

        Raises
        ------
        TypeError
            ``length`` is not an int.
        ValueError
            ``length`` is negative.
        """
        if type(length) is not int:
            raise TypeError(f"length must be an int, not {type(length).__name__}")
        if length < 0:
            raise ValueError(f"length must be >= 0, not {length}")
        self._legacy_dimension(f"iterable{length}", length)

    def check_infinite_dimension(self, name: str = "iteration") -> None:
        """Create the unlimited root dimension ``name`` if missing."""
        self._legacy_dimension(_paths.check_name(name), None)

    def _legacy_dimension(self, name: str, size: int | None) -> None:
        def create() -> None:
            dataset = self._ds()
            if name in dataset.dimensions:
                return
            if self.read_only:
                raise ReadOnlyError(
                    f"cannot create dimension {name!r}: {self.file_name!r} was opened read-only"
                )
            dataset.createDimension(name, size)

        self._legacy_core().engine.run("create dimension", create)
