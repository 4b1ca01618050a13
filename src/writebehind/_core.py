"""What the sync and async stores share: every check and encode that happens on the
caller's side, over the store's catalog (``_catalog``). Nothing here waits on the writer
except through ``Engine.run`` and futures, which the two faces wait on in their own way.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, NamedTuple

import numpy as np
import pint

from . import _paths
from ._bookkeeping import KIND_ATTR, LENGTH_ATTR, UNBOUND_ATTR
from ._catalog import Catalog, GroupEntry, Metadata, VariableEntry
from ._engine import (
    Engine,
    Staging,
    _SetMetadata,
    _WriteEntry,
    _WriteValue,
    on_writer_thread,
)
from ._errors import FormatError, ReadOnlyError
from .codecs import decode, make_encoder, spec_for, spec_from_attrs, unchecked_type
from .codecs._numeric import check_array_dtype
from .codecs.metadata import (
    TYPES_ATTR,
    VALUE_ATTRS,
    check_attr_name,
    check_variable_attr_name,
    decode_attrs,
    encode_attr,
)
from .drivers.base import NodeRecord, StorageIODriver

__all__ = ["DEFAULT_MAX_PENDING_BYTES", "DriverFacade", "StoreCore", "finalize", "last_store"]

DEFAULT_MAX_PENDING_BYTES = 256 * 2**20
logger = logging.getLogger("writebehind")

_OBJECT_OVERHEAD = 64

#: The engine and core of the last store opened on each backend (by its id, while it lives:
#: a backend need not be hashable): a backend serves one open store at a time, and a facade
#: (NetCDFIODriver) finds the store using its backend here. Kept by the store layer:
#: nothing is set on the backend.
_STORES: dict[
    int,
    tuple[weakref.ref[StorageIODriver], weakref.ref[Engine], weakref.ref[StoreCore]],
] = {}


def _remember_store(backend: StorageIODriver, core: StoreCore) -> None:
    key = id(backend)
    backend_ref = weakref.ref(backend, lambda ref: _forget(key, ref))
    _STORES[key] = (backend_ref, weakref.ref(core.engine), weakref.ref(core))


def _forget(key: int, ref: weakref.ref[StorageIODriver]) -> None:
    refs = _STORES.get(key)
    if refs is not None and refs[0] is ref:  # not a later backend that got the same id
        del _STORES[key]


def last_store(backend: StorageIODriver) -> tuple[Engine | None, StoreCore | None]:
    """The engine and core of the last store opened on ``backend`` (None once collected)."""
    refs = _STORES.get(id(backend))
    if refs is None or refs[0]() is not backend:
        return None, None
    return refs[1](), refs[2]()


class DriverFacade(ABC):
    """A user-facing object a store accepts in place of a backend, which it holds.

    :class:`~writebehind.NetCDFIODriver` is one: openmmtools' driver API over a
    ``NetCDFBackend``. The store asks the facade for the backend and uses that alone; the
    facade reaches the store through :func:`last_store`. Nothing flows the other way: the
    backend never sees the facade or the store.
    """

    @abstractmethod
    def backend_for_store(self) -> StorageIODriver:
        """The backend a store opening now is to use (the facade hands it over first)."""


class StoreCore:
    """The engine of one open file plus the caller-side catalog and checks."""

    def __init__(
        self,
        storage_driver: StorageIODriver | DriverFacade,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        unit_registry: Any = None,
        wait_open: bool = True,
    ):
        if not isinstance(storage_driver, StorageIODriver | DriverFacade):
            raise TypeError(
                f"storage_driver must be a StorageIODriver (such as NetCDFIODriver), "
                f"not {type(storage_driver).__name__}"
            )
        #: What the user gave (``store.storage_driver``): the backend or a facade holding it.
        self.storage_driver = storage_driver
        backend = (
            storage_driver.backend_for_store()
            if isinstance(storage_driver, DriverFacade)
            else storage_driver
        )
        previous, _ = last_store(backend)
        if previous is not None:
            previous.check_not_forked()  # a forked child's copy is closing, never closed
            if not previous.closed:
                raise ValueError(
                    f"the driver of {backend.file_name!r} is already used by an open store"
                )
            # A store that is still closing must let go of the file before we open it.
            previous.wait_stopped()
        #: The backend: the only storage object the engine sees.
        self.driver = backend
        self.registry = (
            unit_registry if unit_registry is not None else (pint.get_application_registry())
        )
        self.read_only = backend.read_only
        engine = Engine(backend, max_pending_bytes)
        self.engine = engine
        #: The store's nodes, guarded by the engine's lock.
        self.catalog = Catalog(engine)
        _remember_store(backend, self)
        # The async store passes wait_open=False: it awaits ``opening`` without blocking
        # its event loop, then calls finish_open.
        self.opening: Future[Any] | None = engine.call("open", lambda: _open_and_scan(backend))
        if wait_open:
            self.finish_open()

    def finish_open(self) -> None:
        """Load the catalog from the open's result (waiting for it); idempotent.

        Raises what opening the file raised (the engine is then closed).
        """
        opening = self.opening
        if opening is None:
            return
        try:
            records, root_attrs = self.engine.result(opening)
        except BaseException:
            self.engine.close_quietly()
            raise
        self._load_catalog(records, root_attrs)
        self.opening = None

    # -- catalog ---------------------------------------------------------------------
    def _load_catalog(self, records: list[NodeRecord], root_attrs: dict[str, Any]) -> None:
        """Fill the catalog from the file's scan (at the open: nothing else uses it yet)."""
        catalog = self.catalog
        self._restore_unbound("", root_attrs)
        for record in records:
            if record.is_group:
                catalog.add_group(record.path)
                self._restore_unbound(record.path, record.attrs)
                continue
            error, var = self._variable_from_record(record)
            if var is None:
                assert error is not None
                catalog.add_broken(record.path, error)
            else:
                catalog.add_variable(var)
        catalog.forget_metadata_of_bound()  # written in a later session meanwhile

    def _variable_from_record(
        self, record: NodeRecord
    ) -> tuple[FormatError | None, VariableEntry | None]:
        """The catalog entry of the variable the scan found, or why it cannot be used."""
        assert record.layout is not None
        kind = record.attrs.get(KIND_ATTR)
        if kind is not None and str(kind) != ("appendable" if record.appendable else "fixed"):
            return FormatError(
                f"{record.path!r}: damaged {KIND_ATTR} attribute ({kind!r} does not fit "
                "the variable's dimensions)"
            ), None
        try:
            spec = spec_from_attrs(record.attrs, record.layout, self.registry)
        except FormatError as exc:
            return FormatError(f"{record.path!r}: {exc}"), None
        length = record.length
        if record.appendable and LENGTH_ATTR in record.attrs:
            try:
                committed = int(record.attrs[LENGTH_ATTR])
            except (TypeError, ValueError, OverflowError):  # OverflowError: inf
                committed = -1
            if committed < 0:
                return FormatError(f"{record.path!r}: damaged {LENGTH_ATTR} attribute"), None
            # Entries of a shape with a 0 in it hold no data and never grow the
            # dimension: the committed length alone counts them.
            length = committed if 0 in record.layout.shape else min(length, committed)
        encode = make_encoder(spec)
        staging = None
        if record.appendable:
            staging = self.engine.add_staging(
                record.path, spec.layout, encode, length, unchecked_type(spec)
            )
            self.engine.lengths_on_disk[record.path] = length
        return None, VariableEntry(record.path, spec, record.appendable, encode, staging)

    def _restore_unbound(self, parent: str, attrs: dict[str, Any]) -> None:
        """Take back the metadata of ``parent``'s never-written children (written by
        ``materialize_pending_metadata``)."""
        raw = attrs.get(UNBOUND_ATTR)
        if raw is None:
            return
        self.catalog.unbound_on_disk[parent] = str(raw)
        try:
            children = unbound_from_json(str(raw))
        except (TypeError, ValueError, KeyError, IndexError, RecursionError) as exc:
            logger.warning(
                "writebehind: ignoring the damaged attribute %s of %r in %r (%s)",
                UNBOUND_ATTR,
                parent or "/",
                self.driver.file_name,
                exc,
            )
            return
        for child, metadata in children.items():
            self.catalog.buffer_metadata(_paths.join(parent, child), metadata)

    def check_writable(self, path: str) -> None:
        self.engine.check_usable()
        if self.read_only:
            raise ReadOnlyError(
                f"cannot change {path or '/'!r}: {self.driver.file_name!r} was opened read-only"
            )

    def ensure_group(self, path: str) -> None:
        """Make sure the group ``path`` and those above it exist (enqueue the missing ones).

        Raises
        ------
        AttributeError
            A part of ``path`` is a variable.
        """
        with self.engine.lock:
            self.engine.check_usable()
            self._ensure_groups(path + "/_")  # every group of path, not a child

    def _ensure_groups(self, path: str) -> None:
        """Make sure every group above ``path`` exists (enqueue the missing ones). Locked."""
        catalog = self.catalog
        parts = path.split("/")
        prefix = ""
        for name in parts[:-1]:
            child = _paths.join(prefix, name)
            node = catalog.get(child)
            if node is None:
                if catalog.is_broken(child):
                    raise AttributeError(f"{child!r} is a variable, not a group")
                catalog.add_group(child)
                self.engine.create_group(child, self._take_pending_metadata(child))
            elif isinstance(node, VariableEntry):
                raise AttributeError(f"cannot use {child!r} as a group: it is a variable")
            prefix = child

    def _take_pending_metadata(self, path: str, *, variable: bool = False) -> dict[str, Any]:
        """The attributes kept for ``path`` until it existed; it is a ``variable`` or a group."""
        pending = self.catalog.take_pending_metadata(path)
        owned = sorted(pending.keys() & VALUE_ATTRS.keys()) if variable else []
        if owned:
            # Only an older session could keep these (add_metadata refuses them now): the
            # first value decides, or they would relabel it.
            logger.warning(
                "writebehind: %r in %r: ignoring the metadata %s an earlier session kept for "
                "it: its value owns them",
                path,
                self.driver.file_name,
                ", ".join(owned),
            )
            pending = {name: item for name, item in pending.items() if name not in VALUE_ATTRS}
        return pending_attrs(pending)

    def bind_variable(
        self, path: str, data: Any, appendable: bool, wait: bool = True
    ) -> tuple[VariableEntry, int | None]:
        """The variable at ``path``, created from its first value ``data`` if new.

        Returns the variable and, when this call created a fixed variable, the sequence
        number of its creation, which also wrote ``data`` (None otherwise). A fixed
        variable's creation carries its value, so under backpressure it waits for room
        first, unless ``wait`` is False (the async store has awaited room already).
        """
        self.check_writable(path)
        existing = self.catalog.lookup(path)
        if isinstance(existing, VariableEntry):
            return existing, None
        if isinstance(existing, GroupEntry):
            raise AttributeError(f"cannot write to {path!r}: it is a group, not a variable")
        if self.driver.structure_frozen:
            raise ValueError(f"cannot create {path!r}: {self.driver.structure_frozen}")
        spec = spec_for(data)  # TypeError/ValueError before anything is enqueued
        encode = make_encoder(spec)
        value, nbytes = (None, 0) if appendable else snapshot(spec.layout, encode(data))
        engine = self.engine
        with engine.lock:
            engine.check_usable()
            if wait and nbytes:
                engine.make_room(nbytes)  # releases the lock while it waits: look again below
            existing = self.catalog.get(path)
            if existing is not None:  # another thread created it meanwhile
                if isinstance(existing, GroupEntry):
                    raise AttributeError(f"cannot write to {path!r}: it is a group")
                return existing, None
            self._ensure_groups(path)
            attrs = spec.attrs()
            attrs[KIND_ATTR] = "appendable" if appendable else "fixed"
            attrs.update(self._take_pending_metadata(path, variable=True))
            staging = None
            if appendable:
                staging = engine.add_staging(path, spec.layout, encode, 0, unchecked_type(spec))
            var = VariableEntry(path, spec, appendable, encode, staging)
            self.catalog.add_variable(var)
            seq = engine.create_variable(path, spec.layout, appendable, attrs, value, nbytes)
        return var, None if appendable else seq

    # -- writes ----------------------------------------------------------------------
    def write_op(
        self, path: str, data: Any, at_index: int | None, wait: bool = True
    ) -> PreparedWrite:
        """Check a ``write`` and build its operation, for the caller to enqueue.

        The first write of a new variable is enqueued here already (its creation carries
        the value; see ``bind_variable`` for ``wait``): then ``op`` is None and ``seq`` set.
        """
        if at_index is None:
            var, created = self.bind_variable(path, data, appendable=False, wait=wait)
            if created is not None:
                return PreparedWrite(None, 0, created)
            if var.appendable:
                raise ValueError(
                    f"{path!r} is an appendable variable: use append(), or write(data, "
                    "at_index=i) to overwrite one entry"
                )
            payload, nbytes = snapshot(var.layout, var.encode(data))
            return PreparedWrite(_WriteValue(path, payload, nbytes), nbytes, None)
        self.check_writable(path)
        found = self.catalog.lookup(path)
        if isinstance(found, GroupEntry):
            raise AttributeError(f"cannot write to {path!r}: it is a group, not a variable")
        if found is None or (found.appendable and found.length == 0):
            raise OSError("Cannot write to a specific index for data that does not exist!")
        var = found
        if not var.appendable:
            raise ValueError(f"{path!r} is a fixed variable: write(data) without at_index")
        index = _check_index(at_index, var.length)
        payload, nbytes = snapshot(var.layout, var.encode(data))
        return PreparedWrite(_WriteEntry(path, index, payload, nbytes), nbytes, None)

    def append_target(self, path: str, data: Any) -> Staging:
        """The staging state to append to ``path`` (the variable is created if new)."""
        var, _ = self.bind_variable(path, data, appendable=True)
        if var.staging is None:
            raise ValueError(
                f"{path!r} holds a fixed value (it was written, not appended): use write()"
            )
        assert isinstance(var.staging, Staging)
        return var.staging

    # -- reads -----------------------------------------------------------------------
    def read_call(self, path: str, at_index: Any) -> tuple[Future[Any], Any]:
        """Enqueue the read of ``path``; returns its future and the function that decodes it."""
        self.engine.check_usable()
        var = self.catalog.lookup(path)
        if var is None:
            raise KeyError(f"no variable {path!r} in {self.driver.file_name!r}")
        if isinstance(var, GroupEntry):
            raise AttributeError(f"cannot read {path!r}: it is a group, not a variable")
        driver = self.driver
        spec, registry = var.spec, self.registry
        with self.engine.lock:
            length = var.length
        if not var.appendable:
            if at_index is not None:
                raise ValueError(f"{path!r} is a fixed variable: read() takes no index")
            future = self.engine.call("read", lambda: driver.read_value(path), path)
            return future, lambda raw: _decode(raw, spec, registry, entries=False, path=path)
        if at_index is None:
            future = self.engine.call("read", lambda: driver.read_entries(path, 0, length), path)
            return future, lambda raw: _decode(raw, spec, registry, entries=True, path=path)
        if isinstance(at_index, slice):
            start, stop, step = at_index.indices(length)
            future = self.engine.call(
                "read", lambda: driver.read_entries(path, start, stop, step), path
            )
            return future, lambda raw: _decode(raw, spec, registry, entries=True, path=path)
        index = _check_index(at_index, length)
        future = self.engine.call("read", lambda: driver.read_entries(path, index, index + 1), path)
        return future, lambda raw: _decode(raw[0], spec, registry, entries=False, path=path)

    def length(self, path: str) -> int:
        var = self.catalog.lookup(path)
        if isinstance(var, VariableEntry) and var.appendable:
            with self.engine.lock:
                return var.length
        if isinstance(var, GroupEntry):
            return len(var.children)
        if var is None:
            raise KeyError(f"no variable {path!r} in {self.driver.file_name!r}")
        raise TypeError(f"{path!r} is a fixed variable: it has no length")

    # -- metadata --------------------------------------------------------------------
    def add_metadata(self, path: str, name: str, value: Any) -> None:
        op = self.metadata_op(path, name, value)
        if op is not None:
            self.engine.enqueue(op)

    def metadata_op(self, path: str, name: str, value: Any) -> Any:
        """Check an ``add_metadata`` and build its operation, enqueued by the caller.

        None when ``path`` is not bound yet: the value is kept until the node is created.
        """
        check_attr_name(name)
        self.check_writable(path)
        stored, tag = encode_attr(name, value)
        engine = self.engine
        with engine.lock:
            engine.check_usable()
            node = self.catalog.lookup(path)
            if not isinstance(node, GroupEntry):  # a variable, or a node that may become one
                check_variable_attr_name(name, path)
            if node is None:
                if self.driver.structure_frozen:
                    raise ValueError(f"cannot create {path!r}: {self.driver.structure_frozen}")
                self.catalog.buffer_metadata(path, {name: (stored, tag)})
                return None
        return _SetMetadata(path, name, stored, tag)

    def read_metadata_call(self, path: str) -> tuple[Future[Any], Callable[[Any], Any]]:
        """The read of ``path``'s metadata: its future and the function that decodes it.

        A node not bound yet has only the metadata kept for it: then the future is done
        already, and nothing waits for the writer.
        """
        self.engine.check_usable()
        node = self.catalog.lookup(path)
        if node is None:
            kept: Future[Any] = Future()
            kept.set_result(pending_attrs(self.catalog.pending_metadata(path)))
            return kept, decode_attrs
        hide = (
            frozenset({"units"})
            if isinstance(node, VariableEntry) and node.spec.units
            else (frozenset())
        )
        driver = self.driver
        future = self.engine.call("read metadata", lambda: driver.get_attrs(path), path)
        return future, lambda attrs: _with_path(path, lambda: decode_attrs(attrs, hide))

    def materialize_pending_metadata(self) -> None:
        """Keep the metadata of nodes never written, on their parent groups (at close).

        openmmtools dropped it. Making each such node a group would keep it too, but then
        the node could never become a variable (netCDF cannot turn a group into one), and
        code that writes it in a later session would fail there. So the parent keeps it, in
        ``UNBOUND_ATTR``, and the next open hands it to the node when it is first written
        (an entry left there for a node written since is ignored).
        """
        engine = self.engine
        if self.read_only:
            return
        catalog = self.catalog
        with engine.lock:
            if engine.closed or engine.failed:
                return
            by_parent: dict[str, dict[str, Metadata]] = {}
            for path, metadata in catalog.unbound():
                try:
                    self._ensure_groups(path)
                except AttributeError:  # a variable where a group should be: nowhere to go
                    continue
                parent, _, child = path.rpartition("/")
                by_parent.setdefault(parent, {})[child] = metadata
            for parent, children in sorted(by_parent.items()):
                text = unbound_to_json(children)
                if text == catalog.unbound_on_disk.get(parent):
                    continue  # as the file has it: a session that wrote nothing changes nothing
                if isinstance(catalog.get(parent), GroupEntry):
                    engine.set_attrs_locked(parent, {UNBOUND_ATTR: text})
                    catalog.unbound_on_disk[parent] = text

    def close(self) -> None:
        """Keep the pending metadata, write everything, close; closing again only waits.

        Raises
        ------
        BackgroundWriteError
            An operation failed on the writer (the file is closed all the same).
        """
        if self.engine.closed:
            self.engine.close()  # already closed or closing: this only waits for the writer
            return
        try:
            self.materialize_pending_metadata()
        finally:  # the store closes even if that fails (and then raises it)
            self.engine.close()

    # -- iteration -------------------------------------------------------------------
    def iter_paths(self) -> Iterator[str]:
        return iter(self.catalog.paths())


def finalize(core: StoreCore) -> None:
    """Flush and close the store of ``core`` that was never closed (collected, or at exit)."""
    if core.engine.forked:
        # A forked child (at its exit, or collecting the store): the store is the parent's,
        # which flushes and closes it; this process has no writer to wait for.
        return
    if on_writer_thread():
        # Collected on another store's writer thread, which holds the library lock that
        # this store's writer needs to close: closing here would deadlock. Close on a
        # thread of its own (not a daemon: the interpreter waits for it at exit).
        threading.Thread(
            target=finalize, args=(core,), name="writebehind-finalizer", daemon=False
        ).start()
        return
    try:
        core.materialize_pending_metadata()
    finally:
        core.engine.close_quietly()


class PreparedWrite(NamedTuple):
    """A checked ``write``: the operation to enqueue, or the ``seq`` it was enqueued as."""

    op: Any
    nbytes: int
    seq: int | None


def snapshot(layout: Any, payload: Any) -> tuple[Any, int]:
    """A private copy of one value's payload and its size in bytes."""
    if layout.storage == "numeric":
        arr = np.array(payload, dtype=layout.dtype, copy=True)
        return arr, arr.nbytes
    return payload, len(payload) + _OBJECT_OVERHEAD


def _check_index(at_index: Any, length: int) -> int:
    if isinstance(at_index, bool) or not isinstance(at_index, int | np.integer):
        raise TypeError(f"an index must be an int or a slice, not {type(at_index).__name__}")
    index = int(at_index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise ValueError(
            f"Cannot choose an index beyond the maximum length of the appended data of {length}"
        )
    return index


def _decode(raw: Any, spec: Any, registry: Any, *, entries: bool, path: str) -> Any:
    return _with_path(path, lambda: decode(raw, spec, registry, entries=entries))


def _with_path(path: str, fn: Any) -> Any:
    try:
        return fn()
    except FormatError as exc:
        raise FormatError(f"{path or '/'!r}: {exc}") from exc


def _open_and_scan(driver: StorageIODriver) -> tuple[list[NodeRecord], dict[str, Any]]:
    driver.open()
    return list(driver.scan()), driver.root_attrs()


def unbound_to_json(children: dict[str, dict[str, tuple[Any, str | None]]]) -> str:
    """``{child: {name: (stored, tag)}}`` as JSON: each stored value with its dtype."""
    out: dict[str, dict[str, list[Any]]] = {}
    for child, metadata in children.items():
        entries = out[child] = {}
        for name, (stored, tag) in metadata.items():
            if isinstance(stored, str):
                entries[name] = ["str", stored, tag]
            else:
                value = np.asarray(stored)
                entries[name] = [value.dtype.str, value.tolist(), tag]
    return json.dumps(out, sort_keys=True)


def unbound_from_json(text: str) -> dict[str, dict[str, tuple[Any, str | None]]]:
    """The inverse of ``unbound_to_json`` (ValueError and friends on damaged input)."""
    children = json.loads(text)
    if not isinstance(children, dict):
        raise ValueError("not a JSON object")
    out: dict[str, dict[str, tuple[Any, str | None]]] = {}
    for child, metadata in children.items():
        _paths.check_name(child)
        if not isinstance(metadata, dict):
            raise ValueError(f"the metadata of {child!r} is not a JSON object")
        entries = out[child] = {}
        for name, (kind, value, tag) in metadata.items():
            check_attr_name(name)
            if tag is not None and not isinstance(tag, str):
                raise TypeError(f"a type tag must be a str, not {tag!r}")
            if kind == "str":
                if not isinstance(value, str) or "\x00" in value:
                    raise TypeError(f"metadata {name!r} of {child!r} is not a str without NUL")
                entries[name] = (value, tag)
                continue
            # Only what encode_attr stores: numbers of a supported dtype, at most 1-D (an
            # object, date or complex value would fail the store when the node is written).
            dtype = check_array_dtype(np.dtype(kind), "attribute")
            if dtype.kind not in "iuf":
                raise TypeError(f"metadata {name!r} of {child!r}: dtype {kind!r}")
            try:
                array = np.asarray(value, dtype=dtype)
            except OverflowError as exc:  # 1000 as int8: not a ValueError
                raise ValueError(f"metadata {name!r} of {child!r}: {exc}") from None
            if array.ndim > 1:
                raise ValueError(f"metadata {name!r} of {child!r} has shape {array.shape}")
            entries[name] = (array if array.ndim else array[()], tag)
        decode_attrs(pending_attrs(entries))  # FormatError: a tag that does not fit
    return out


def pending_attrs(pending: dict[str, tuple[Any, str | None]]) -> dict[str, Any]:
    """Attributes for metadata ``{name: (stored, tag)}``, with the JSON record of the tags."""
    attrs = {name: stored for name, (stored, _tag) in pending.items()}
    types = {name: tag for name, (_stored, tag) in pending.items() if tag is not None}
    if types:
        attrs[TYPES_ATTR] = json.dumps(types)
    return attrs
