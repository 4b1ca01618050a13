"""NetCDFIODriver: openmmtools.storage's driver API, a facade over a NetCDF backend.

openmmtools' ``NetCDFIODriver`` was used directly too: ``driver.create_storage_variable(path,
int).write(4)``, ``driver.get_directory("a/b")``, ``driver.ncfile``. Here it is a facade that
holds a :class:`~writebehind.drivers.netcdf.NetCDFBackend` and reaches the store using it; its
methods own no write logic of their own. A variable handed out by the driver delegates to the
store node at its path: the node of the store opened on the driver if one is open, otherwise
of a *private* store the driver opens over itself on first use. Either way every netCDF call
still happens on that store's one writer thread, with the same checks, codecs and file layout
as ``store.a.b.write(x)``. The engine only ever sees the backend, which never calls back up.

Raw netCDF objects (``ncfile``, the group ``get_directory`` returns) are handed out only after
the owning store has applied everything enqueued before, so legacy code that inspects them sees
what it wrote. Touching them while the store keeps writing is the caller's responsibility:
netCDF-C is not thread-safe.

``sync()`` and ``close()`` are openmmtools' own: they flush and close the store using the
driver, from any thread.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

import numpy as np
import pint

from . import _paths
from ._catalog import GroupEntry, VariableEntry
from ._core import DriverFacade, StoreCore, finalize, last_store
from ._engine import Engine
from ._node import StorageInterfaceDirVar
from .codecs.openmm_units import is_openmm_quantity_class
from .drivers.base import StorageIODriver
from .drivers.netcdf import NetCDFBackend, RecoveryReport

if TYPE_CHECKING:
    from ._engine import Handle

__all__ = ["LegacyStorageVariable", "NetCDFIODriver"]

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

    def __init__(self, driver: NetCDFIODriver, path: str, type_key: Any = None):
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


_T = TypeVar("_T")


class _FromBackend(Generic[_T]):
    """A read-only attribute of the driver: its backend's attribute of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, driver: None, owner: type) -> _FromBackend[_T]: ...
    @overload
    def __get__(self, driver: NetCDFIODriver, owner: type) -> _T: ...
    def __get__(self, driver: NetCDFIODriver | None, owner: type) -> Any:
        return self if driver is None else getattr(driver.backend, self._name)

    def __set__(self, driver: NetCDFIODriver, value: NoReturn) -> NoReturn:
        raise AttributeError(f"{self._name!r} is the backend's: it cannot be set on the driver")


#: Methods of the backend contract that the facade does not have (``sync`` and ``close``
#: are openmmtools' own, the store's flush and close).
_BACKEND_ONLY = frozenset(
    {
        "open",
        "scan",
        "commit_lengths",
        "chunk_entries",
        "create_group",
        "create_variable",
        "set_attrs",
        "get_attrs",
        "root_attrs",
        "write_entries",
        "write_value",
        "read_entries",
        "read_value",
    }
)


class NetCDFIODriver(DriverFacade):
    """A NetCDF-4 (HDF5) file, for a store, with openmmtools' driver API.

    ``StorageInterface(NetCDFIODriver("run.nc"))`` stores in the file through the
    :class:`~writebehind.drivers.netcdf.NetCDFBackend` this object holds (``backend``); its
    own methods are openmmtools' (``get_directory``, ``create_storage_variable``,
    ``get_storage_variable``, ``ncfile``, ``sync``, ``close``...), which work through the
    store opened on it, or through a private one opened on first use.

    Parameters
    ----------
    file_name, access_mode, checksums
        Those of :class:`~writebehind.NetCDFBackend`, which the driver makes with them: the
        path of the ``.nc`` file; ``None``, ``'w'``, ``'a'`` or ``'r'``; whether numeric
        appendable variables get HDF5's Fletcher32 checksum per chunk (off by default).
    """

    def __init__(
        self,
        file_name: str | bytes | os.PathLike[Any],
        access_mode: str | None = None,
        *,
        checksums: bool = False,
    ):
        self._backend = NetCDFBackend(file_name, access_mode, checksums=checksums)
        self._lock = threading.RLock()
        self._used = False  # a store was opened on this driver
        # The store the driver API opened for itself (no store was open), and the
        # finalizer that closes it with the driver.
        self._private: StoreCore | None = None
        self._private_finalizer: weakref.finalize[Any, Any] | None = None
        self._root: StorageInterfaceDirVar | None = None
        self._variables: dict[str, LegacyStorageVariable] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Before the facade, a subclass could override the backend's methods here; now the
        # engine would never call them. Refuse such a subclass rather than ignore it.
        super().__init_subclass__(**kwargs)
        overridden = sorted(_BACKEND_ONLY & vars(cls).keys())
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(overridden)}: NetCDFIODriver is "
                "openmmtools' driver API over a backend, and the store calls the backend's "
                "methods; subclass writebehind.NetCDFBackend (and pass it to the store) instead"
            )

    # -- what the store uses ---------------------------------------------------------------
    @property
    def backend(self) -> NetCDFBackend:
        """The backend that stores the file (the only object the engine sees)."""
        return self._backend

    def backend_for_store(self) -> StorageIODriver:
        """Close the private store, if open, and hand the backend to the store opening."""
        self._release_private_store()
        self._used = True
        return self._backend

    # -- the backend's facts, read-only -----------------------------------------------------
    file_name = _FromBackend[str]()
    access_mode = _FromBackend[str | None]()
    read_only = _FromBackend[bool]()
    is_open = _FromBackend[bool]()
    checksums = _FromBackend[bool]()
    """Whether the numeric appendable variables created get HDF5's Fletcher32."""
    recovery = _FromBackend[RecoveryReport | None]()
    """What crash recovery found when the file was opened (None: not opened, or new)."""
    structure_frozen = _FromBackend[str]()
    """Why no group or variable can be created in the open file ("" when they can)."""

    def __repr__(self) -> str:
        return f"<NetCDFIODriver {self.file_name!r} mode={self.access_mode!r}>"

    # -- which store does the work -------------------------------------------------------
    def _open_core(self) -> StoreCore | None:
        _engine, core = last_store(self._backend)
        if core is None or core.engine.closed:
            return None
        return core

    def _legacy_core(self) -> StoreCore:
        """The core of the open store using this driver, opening a private one if none is."""
        core = self._open_core()
        if core is not None:
            return core
        with self._lock:
            core = self._open_core()
            if core is not None:
                return core
            if self._used:
                self._backend.stop_truncating()  # a store opened the file before: keep it
            core = StoreCore(self)
            self._private = core
            self._private_finalizer = weakref.finalize(self, finalize, core)
            return core

    def _legacy_node(self, path: str) -> StorageInterfaceDirVar:
        core = self._legacy_core()
        root = self._root
        if root is None or root._core is not core:
            root = StorageInterfaceDirVar("", core)
            self._root = root
        return root[path] if path else root

    def _take_private(self) -> StoreCore | None:
        """Forget the private store (it is closed by the caller, not at collection)."""
        private, self._private = self._private, None
        if self._private_finalizer is not None:
            self._private_finalizer.detach()
            self._private_finalizer = None
        return private

    def _release_private_store(self) -> None:
        """Close the private store so that a store the user opens can own the file."""
        with self._lock:
            private = self._take_private()
            if private is None or private.engine.closed:
                return
            private.close()
            self._backend.stop_truncating()

    def _open_engine(self) -> Engine | None:
        """The engine of the store using the driver, while that store is open.

        None when no store was ever opened on the driver, or when it is closed or closing:
        then only after its writer has finished the close (raising its failure, if any).
        """
        engine, _core = last_store(self._backend)
        if engine is not None and engine.closed:
            engine.close()  # already closed or closing: this only waits for the writer
            return None
        return engine

    def _drain(self) -> None:
        """Wait until the store using the driver has applied everything enqueued."""
        engine = self._open_engine()
        if engine is not None:
            engine.run("drain", lambda: None)

    # -- openmmtools' driver API -----------------------------------------------------------
    def sync(self, durable: bool = False) -> None:
        """Flush the store using the driver (``durable``: fsync too), as ``StorageInterface.flush``.

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer.
        """
        engine = self._open_engine()
        if engine is not None:  # None: nothing was written, or the close synced it
            engine.flush(durable)

    def close(self) -> None:
        """Write everything pending and close the store using the driver (and the file).

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer (the file is closed all the same).
        """
        engine, core = last_store(self._backend)
        if engine is None:
            return
        with self._lock:
            private = self._private
            if private is not None and private.engine is engine:
                self._take_private()
                private.close()
                self._backend.stop_truncating()
                return
        if core is not None:
            core.close()  # as StorageInterface.close: keeps the pending metadata
        else:
            engine.close()

    @property
    def ncfile(self) -> Any:
        """The ``netCDF4.Dataset``, once the owning store has applied everything enqueued.

        None while no file is open (no store uses the driver, it was closed, or nothing has
        been written yet to a file that did not exist), as in openmmtools. Using it while
        the store keeps writing is the caller's responsibility (netCDF-C is not
        thread-safe).
        """
        self._drain()
        return self._backend.dataset

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
        path = _normalize(path)
        core = self._legacy_core()
        if path:
            node = core.catalog.lookup(path)
            if node is None:
                if not create:
                    raise KeyError(f"no group {path!r} in {self.file_name!r}")
                core.check_writable(path)
                core.ensure_group(path)
            elif not isinstance(node, GroupEntry):
                raise AttributeError(f"{path!r} is a variable, not a group")
        backend = self._backend
        return core.engine.run("get directory", lambda: backend.group(path), path)

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
        path = _normalize(path)
        if not path:
            raise ValueError("a variable needs a name: the root '/' is a group")
        variable = LegacyStorageVariable(self, path, type_key)
        if isinstance(self._legacy_core().catalog.lookup(path), GroupEntry):
            raise AttributeError(f"{path!r} is a group, not a variable")
        with self._lock:
            self._variables[path] = variable
        return variable

    def get_storage_variable(self, path: str) -> LegacyStorageVariable:
        """The variable at ``path``: one made by ``create_storage_variable`` or in the file.

        Raises
        ------
        KeyError
            No such variable (a group at ``path`` is not a variable either).
        """
        path = _normalize(path)
        with self._lock:
            known = self._variables.get(path)
        if known is not None:
            return known
        if not path or not isinstance(self._legacy_core().catalog.lookup(path), VariableEntry):
            raise KeyError(f"No variable found at {path!r} in {self.file_name!r}")
        variable = LegacyStorageVariable(self, path)
        with self._lock:
            return self._variables.setdefault(path, variable)

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
        if path and core.catalog.lookup(path) is None:
            with self._lock:
                known = path in self._variables
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
        backend = self._backend
        self._legacy_core().engine.run(
            "create dimension", lambda: backend.create_dimension(name, size)
        )
