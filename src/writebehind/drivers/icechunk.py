"""Icechunk repositories: the Zarr backend writing through an Icechunk session.

``writebehind.open("icechunk:///local/dir")`` and ``"icechunk+s3://bucket/prefix"`` store
here (a ``#branch`` fragment picks a branch; ``main`` by default); see
``docs/scale-out.md``, "Icechunk". The layout in the repository is the Zarr backend's
(``drivers/zarr.py``); what differs is the commit:

- every write goes to the writable session of the branch, invisible to anyone else until
  ``commit_lengths`` (a flush) writes the shapes and commits the session: **one Icechunk
  commit per flush**, a snapshot consistent across all variables and groups. ``sync`` and
  ``close`` commit what is uncommitted too (structure, attributes, fixed values), so that
  nothing acknowledged stays in a session only. After each commit a new writable session
  continues from the new snapshot;
- a reader (``'r'``) opens a read-only session on the branch: it sees the last committed
  snapshot, all variables at the same commit;
- a second writer on the same branch is not refused at open (there is no lease): its first
  commit after the other's raises Icechunk's ``ConflictError``, surfaced as
  :class:`~writebehind.StoreInUseError` (the engine reports it as a BackgroundWriteError),
  never silent loss. Icechunk's local-filesystem storage is not safe for concurrent
  committers (its documentation); use object storage for many writers;
- ``'w'`` on an existing repository starts the branch over: its first commit holds an
  empty hierarchy plus what is written; earlier snapshots stay in the history (Icechunk
  1.x has no amend: the history grows by one snapshot per flush);
- ``keep_history`` (seconds) shortens the history at close: the writer expires the
  snapshots older than that (``Repository.expire_snapshots``; every branch's tip stays)
  and deletes the objects older than that which no branch or tag reaches any more
  (``Repository.garbage_collect``). Those include chunks another writer of the repository
  wrote and has not committed yet: ``keep_history`` must exceed the longest time any
  writer of the repository goes between a write and its next flush;
- a repository is created in Icechunk's format 1 on Icechunk 2 too (``CREATE_OPTIONS``), so
  that it moves between Python 3.11 (Icechunk 1.x) and 3.12+ (Icechunk 2.x).
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Mapping, Sized
from typing import Any

import icechunk
from zarr import AsyncArray, AsyncGroup
from zarr.api import asynchronous as zarr_async
from zarr.storage import StorePath

from .._bookkeeping import LENGTH_ATTR
from .._errors import StoreInUseError
from . import _zarr_io
from .zarr import METADATA, ZarrBackend, _gather

__all__ = ["IcechunkBackend", "is_icechunk_target", "make_storage"]

logger = logging.getLogger("writebehind")

#: URL schemes of Icechunk repositories: a local directory, or S3 (and compatibles).
SCHEMES = ("icechunk://", "icechunk+s3://")

#: The major version of the Icechunk installed: 1 on Python 3.11, 2 on 3.12 and later.
ICECHUNK_MAJOR = int(icechunk.__version__.split(".")[0])
#: How a repository is created. Icechunk 2 creates its format 2 by default, which Icechunk 1
#: cannot open ("no repository"); format 1, which Icechunk 2 reads and writes too, lets a
#: repository written under one Python be read and appended to under the other. What format
#: 2 adds that this costs: ``Session.amend`` (writebehind does not use it).
CREATE_OPTIONS: dict[str, Any] = {"create_version": 1} if ICECHUNK_MAJOR >= 2 else {}


def is_icechunk_target(target: str) -> bool:
    """Whether ``target`` names an Icechunk repository (``icechunk://``, ``icechunk+s3://``)."""
    return target.startswith(SCHEMES)


def make_storage(location: str, options: Mapping[str, Any] | None) -> icechunk.Storage:
    """The Icechunk storage of ``location`` (a URL without its ``#branch``).

    For S3, ``options`` are ``icechunk.s3_storage``'s keywords (``endpoint_url``,
    ``allow_http``, ``access_key_id``, ``region``...); what they leave out comes from the
    standard variables (``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), else from Icechunk's own lookup.
    """
    if location.startswith("icechunk+s3://"):
        bucket, _, prefix = location.removeprefix("icechunk+s3://").partition("/")
        config: dict[str, Any] = dict(options or {})
        env = os.environ
        if "AWS_ENDPOINT_URL" in env:
            config.setdefault("endpoint_url", env["AWS_ENDPOINT_URL"])
        if "AWS_DEFAULT_REGION" in env:
            config.setdefault("region", env["AWS_DEFAULT_REGION"])
        if env.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true"):
            config.setdefault("allow_http", True)
        if "AWS_ACCESS_KEY_ID" in env and "AWS_SECRET_ACCESS_KEY" in env:
            config.setdefault("access_key_id", env["AWS_ACCESS_KEY_ID"])
            config.setdefault("secret_access_key", env["AWS_SECRET_ACCESS_KEY"])
        if "access_key_id" not in config:
            config.setdefault("from_env", True)
        if "endpoint_url" in config:  # an S3-compatible server: bucket in the path
            config.setdefault("force_path_style", True)
        return icechunk.s3_storage(bucket=bucket, prefix=prefix.strip("/") or None, **config)
    if options:
        raise ValueError(f"storage_options are for object storage; {location!r} is local")
    path = location.removeprefix("icechunk://")
    return icechunk.local_filesystem_storage(os.path.abspath(path))


def _hint() -> str:
    if ICECHUNK_MAJOR >= 2:
        return ""
    return (
        f" (Icechunk {icechunk.__version__} opens repositories of format 1 only: one "
        "created by Icechunk 2 in its format 2 needs Python 3.12+ and Icechunk 2)"
    )


def _open_or_create(storage: icechunk.Storage) -> icechunk.Repository:
    """``Repository.open_or_create``, when other writers may be creating the repository at
    the same moment: Icechunk lets one of them create it and fails the others ("branch
    update conflict", "repositories can only be created in clean prefixes"), which then
    open what it made. Raises Icechunk's error if it still fails after about 1.6 s."""
    for attempt in range(8):
        try:
            return icechunk.Repository.open_or_create(storage, **CREATE_OPTIONS)
        except icechunk.IcechunkError:
            if attempt == 7:
                raise
            time.sleep(0.05 * 2**attempt / 4)  # the creating writer finishes meanwhile
    raise AssertionError("unreachable")


class IcechunkBackend(ZarrBackend):
    """The backend of Icechunk repositories: ``icechunk:///dir``, ``icechunk+s3://b/p``.

    Parameters
    ----------
    target : str
        The repository's URL; a ``#name`` fragment names the branch (else ``branch``).
    access_mode : {None, 'w', 'a', 'r'}
        See :class:`~writebehind.StorageIODriver`; None and ``'w'`` create the repository
        and the branch (from ``main``) when missing, ``'w'`` starts an existing branch
        over (its history stays).
    storage_options : mapping, optional
        ``icechunk.s3_storage``'s keywords, for ``icechunk+s3://``.
    branch : str
        The branch written or read, when the URL has no fragment.
    keep_history : float, optional
        Seconds of history kept: a writer's ``close`` expires the snapshots older than this
        and garbage-collects the objects older than this that nothing reaches any more
        (see the module's docstring for the margin it needs). None (the default): keep
        every snapshot.

    Raises
    ------
    StoreInUseError
        At a commit, when another writer committed to the branch since this session began
        (Icechunk's ``ConflictError`` is its cause).
    """

    #: No ``group=``: a replica gets a branch (or a repository) of its own.
    has_groups = False

    def __init__(
        self,
        target: str,
        access_mode: str | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        branch: str = "main",
        keep_history: float | None = None,
    ):
        if keep_history is not None and not keep_history >= 0:
            raise ValueError(f"keep_history must be a number of seconds >= 0: {keep_history!r}")
        self.keep_history = keep_history
        location, _, fragment = target.partition("#")
        super().__init__(target, access_mode, storage_options=storage_options)
        self.location = location
        self.branch = fragment or branch
        self._repo: icechunk.Repository | None = None
        self._session: icechunk.Session | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        if self._store is not None:
            return
        mode = self._access_mode
        storage = make_storage(self.location, self.storage_options)
        if mode in ("a", "r"):
            if not icechunk.Repository.exists(storage):
                raise FileNotFoundError(f"No Icechunk repository at {self.location!r}{_hint()}")
            repo = icechunk.Repository.open(storage)
        else:
            repo = _open_or_create(storage)
        self._repo = repo
        if self.branch not in repo.list_branches():
            if mode in ("a", "r"):
                raise FileNotFoundError(f"No branch {self.branch!r} in {self.location!r}")
            # a new branch starts at main's tip (a new repository's main: empty)
            try:
                repo.create_branch(self.branch, repo.lookup_branch("main"))
            except icechunk.IcechunkError:
                if self.branch not in repo.list_branches():  # not made by another writer
                    raise
        if self.read_only:
            self._session = repo.readonly_session(branch=self.branch)
        else:
            self._session = repo.writable_session(self.branch)
        store = self._session.store
        exists = _zarr_io.run(store.exists(METADATA))
        if mode in ("a", "r") and not exists:
            raise FileNotFoundError(f"No writebehind store in {self._where()}")
        self._store = store
        self._pending = _zarr_io.PendingWrites()
        self._groups, self._arrays, self._unsynced = {}, {}, set()
        if mode == "w":
            # every node, one call: deleting key by key fails on a chunk whose array the
            # deletion of its zarr.json removed already
            _zarr_io.run(store.delete_dir(""))
            self._ensure_root()
        elif exists:
            group = zarr_async.open_group(store=store, mode="r" if self.read_only else "r+")
            self._root = _zarr_io.run(group)
            self._groups[""] = self._root

    def _where(self) -> str:
        return f"branch {self.branch!r} of {self.location!r}"

    def _take_lease(self) -> None:
        """No lease: Icechunk's commit detects a second writer (a ConflictError)."""

    def sync(self, durable: bool = False) -> None:
        self._pending.wait()
        self._commit("writebehind sync")

    def commit_lengths(self, lengths: dict[str, int], durable: bool) -> None:
        # chunks, then shapes, in the session; one commit makes them visible together
        self._pending.wait()
        commits = []
        for path in sorted(lengths):
            state = self._arrays[path]
            attrs = {**state.attrs, LENGTH_ATTR: int(lengths[path])}
            # never shrink: Icechunk drops the chunks outside a shape (see write_entries)
            rows = max(int(lengths[path]), state.array.shape[0])
            commits.append(self._save(path, attrs, (rows, *state.array.shape[1:])))
        if commits:
            _zarr_io.run(_gather(commits))
        self._commit("writebehind flush")

    def write_entries(self, path: str, start: int, entries: Any) -> None:
        # Icechunk refuses a chunk outside the array's shape ("invalid chunk index"), so
        # the shape in the session grows to cover the entries before they are written.
        # Only a commit shows it, once every chunk is stored: a reader never finds a row
        # that was not written (rows written but not yet committed can show: they hold
        # their data). The shape never shrinks: Icechunk would drop the chunks outside.
        state = self._array(path)
        end = start + len(entries)
        if state.appendable and end > state.array.shape[0]:
            self._check_writable()
            _zarr_io.run(self._save(path, state.attrs, (end, *state.array.shape[1:])))
        super().write_entries(path, start, entries)

    def _commit(self, message: str) -> None:
        """Commit the session if it holds changes, and continue in a new one."""
        session, repo = self._session, self._repo
        if session is None or repo is None or session.read_only:
            return
        if not session.has_uncommitted_changes:
            return
        try:
            session.commit(message)
        except icechunk.ConflictError as exc:
            raise StoreInUseError(
                f"{self._where()} was committed to by another writer since "
                "this one's last commit: this flush is not committed (one writer per "
                "branch; see docs/scale-out.md, 'Icechunk')"
            ) from exc
        self._session = repo.writable_session(self.branch)
        self._rebind(self._session.store)

    def _rebind(self, store: Any) -> None:
        """Point every array and group known at ``store`` (the new session's)."""
        self._store = store
        for state in self._arrays.values():
            old = state.array
            path = StorePath(store, old.store_path.path)
            state.array = AsyncArray(metadata=old.metadata, store_path=path)
        for key, group in list(self._groups.items()):
            path = StorePath(store, group.store_path.path)
            self._groups[key] = AsyncGroup(metadata=group.metadata, store_path=path)
        if self._root is not None:
            self._root = self._groups[""]

    def close(self) -> None:
        if self._store is None:
            return
        try:
            if not self.read_only and self._pending.error is None:
                self._pending.wait()
                self._commit("writebehind close")
                if self.keep_history is not None:
                    self._expire_history(self.keep_history)
        finally:
            super().close()
            self._session, self._repo = None, None

    def _expire_history(self, seconds: float) -> None:
        """Expire the snapshots older than ``seconds`` and delete the objects older than
        that which no branch or tag reaches any more. A failure is logged, not raised:
        everything written is committed already."""
        repo = self._repo
        if repo is None:
            return
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
        try:
            expired = repo.expire_snapshots(older_than=cutoff)
            collected = repo.garbage_collect(delete_object_older_than=cutoff)
        except Exception as exc:
            logger.warning(
                "writebehind: %s: expiring the history failed (what was written is committed): %r",
                self._where(),
                exc,
            )
            return
        # (what the two return differs between Icechunk releases: only logged, loosely)
        logger.info(
            "writebehind: %s: expired snapshots %s; deleted chunks: %s",
            self._where(),
            len(expired) if isinstance(expired, Sized) else expired,
            getattr(collected, "chunks_deleted", collected),
        )

    def stored_bytes(self) -> int:
        """Bytes of the repository: its files (local), or Icechunk's count of its chunk
        objects (S3: small chunks inlined in manifests, and metadata, left out)."""
        if self._repo is None:
            return 0
        if self.location.startswith("icechunk://"):
            root = os.path.abspath(self.location.removeprefix("icechunk://"))
            return sum(
                os.path.getsize(os.path.join(folder, name))
                for folder, _, names in os.walk(root)
                for name in names
            )
        return int(self._repo.total_chunks_storage())
