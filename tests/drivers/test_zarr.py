"""The contract suite on the Zarr backend, on a local directory and on S3 (moto)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import writebehind
from writebehind.codecs.base import Layout

pytest.importorskip("zarr", reason="the Zarr backend needs the zarr extra")
pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")

import zarr

from writebehind.drivers import _zarr_io
from writebehind.drivers.zarr import ZarrBackend

from .contract import DriverContract, MakeBackend, rows

pytestmark = pytest.mark.zarr  # `pytest -m zarr`: .ci/run runs these on Python 3.12 too


class TestZarrBackendLocal(DriverContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> MakeBackend:
        path = str(tmp_path / "contract.zarr")

        def make(mode: str | None) -> ZarrBackend:
            return ZarrBackend(path, mode)

        return make


class TestZarrBackendS3(DriverContract):
    @pytest.fixture
    def make_backend(self, s3_bucket: str) -> MakeBackend:
        url = f"s3://{s3_bucket}/runs/contract.zarr"

        def make(mode: str | None) -> ZarrBackend:
            return ZarrBackend(url, mode)

        return make


# -- what is the Zarr backend's own ------------------------------------------------------
F8 = Layout("numeric", np.dtype("f8"), (2, 3))


def stored_shape(path: Path, variable: str) -> list[int]:
    """The shape a reader finds in the array's zarr.json now."""
    return list(json.loads((path / variable / "zarr.json").read_text())["shape"])


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "run.zarr"


@pytest.fixture
def backend(store_path: Path) -> Iterator[ZarrBackend]:
    driver = ZarrBackend(str(store_path), "w")
    driver.open()
    yield driver
    driver.close()


def test_the_shape_stays_the_committed_length_until_a_commit(
    backend: ZarrBackend, store_path: Path
) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.write_entries("x", 0, rows(0, 5))
    backend.sync()
    assert stored_shape(store_path, "x") == [0, 2, 3]
    backend.commit_lengths({"x": 5}, durable=False)
    assert stored_shape(store_path, "x") == [5, 2, 3]


def test_a_reader_sees_the_committed_entries_only(backend: ZarrBackend, store_path: Path) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.write_entries("x", 0, rows(0, 5))
    backend.commit_lengths({"x": 3}, durable=False)
    backend.write_entries("x", 5, rows(5, 2))
    reader = ZarrBackend(str(store_path), "r")
    reader.open()
    (record,) = reader.scan()
    assert record.length == 3
    np.testing.assert_array_equal(reader.read_entries("x", 0, 3), rows(0, 3))
    reader.close()


def test_a_durable_commit_fsyncs_the_chunks_before_writing_the_shape(
    backend: ZarrBackend, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.write_entries("x", 0, rows(0, 5))
    calls: list[tuple[set[str], list[int]]] = []

    def record(root: str, keys: set[str]) -> None:
        calls.append((set(keys), stored_shape(store_path, "x")))

    monkeypatch.setattr(_zarr_io, "fsync_files", record)
    backend.commit_lengths({"x": 5}, durable=True)
    (chunks, shape_then), (metadata, _) = calls
    assert "x/c/0/0/0" in chunks and shape_then == [0, 2, 3]
    assert metadata == {"x/zarr.json"}


def test_fsync_files_syncs_the_files_and_their_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run.zarr" / "x" / "c").mkdir(parents=True)
    (tmp_path / "run.zarr" / "x" / "c" / "0").write_bytes(b"chunk")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")))
    _zarr_io.fsync_files(str(tmp_path / "run.zarr"), {"x/c/0", "x/c/missing"})
    monkeypatch.setattr(os, "fsync", real_fsync)
    root = tmp_path / "run.zarr"
    want = [root / "x" / "c" / "0", root / "x" / "c", root / "x", root, tmp_path]
    assert synced == [str(path) for path in want]


def test_a_failed_chunk_write_fails_every_later_commit(
    backend: ZarrBackend, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.create_variable("x", F8, appendable=True)

    async def fail(*args: Any) -> None:
        raise OSError("the storage refused the chunk")

    # whole chunks are stored by _zarr_io.store_chunks, a merge into a chunk by setitem
    monkeypatch.setattr(zarr.AsyncArray, "setitem", fail)
    monkeypatch.setattr(_zarr_io, "store_chunks", fail)
    backend.write_entries("x", 0, rows(0, 5))
    monkeypatch.undo()
    for _ in range(2):
        with pytest.raises(OSError, match="refused the chunk"):
            backend.commit_lengths({"x": 5}, durable=False)
    assert stored_shape(store_path, "x") == [0, 2, 3]


def test_attribute_dtypes_survive_reopening(backend: ZarrBackend, store_path: Path) -> None:
    values = {
        "f4": np.float32(0.5),
        "flag": np.bool_(True),
        "u2": np.array([1, 2], dtype="u2"),
        "nan": np.float64("nan"),
        "empty": np.array([], dtype="i4"),
    }
    backend.set_attrs("", values)
    backend.close()
    reader = ZarrBackend(str(store_path), "r")
    reader.open()
    got = reader.root_attrs()
    for name, value in values.items():
        np.testing.assert_array_equal(got[name], value)
        assert np.asarray(got[name]).dtype == np.asarray(value).dtype
        assert isinstance(got[name], np.ndarray) == isinstance(value, np.ndarray)


def test_an_attribute_of_another_type_is_refused(backend: ZarrBackend) -> None:
    with pytest.raises(TypeError, match="str and numeric"):
        backend.set_attrs("", {"when": np.datetime64("2026-01-01")})


def test_opening_read_only_writes_nothing(backend: ZarrBackend, store_path: Path) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.write_entries("x", 0, rows(0, 3))
    backend.commit_lengths({"x": 3}, durable=False)
    backend.close()
    before = {p: p.stat().st_mtime_ns for p in store_path.rglob("*")}
    with writebehind.open(store_path, "r") as store:
        store.x.read()
    assert {p: p.stat().st_mtime_ns for p in store_path.rglob("*")} == before


def test_a_read_only_backend_refuses_writes(backend: ZarrBackend, store_path: Path) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.close()
    reader = ZarrBackend(str(store_path), "r")
    reader.open()
    list(reader.scan())
    with pytest.raises(OSError, match="read-only"):
        reader.write_entries("x", 0, rows(0, 1))
    with pytest.raises(OSError, match="read-only"):
        reader.create_group("g")


def test_w_refuses_a_directory_holding_other_files(tmp_path: Path) -> None:
    (tmp_path / "data.zarr").mkdir()
    (tmp_path / "data.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no Zarr store"):
        ZarrBackend(str(tmp_path / "data.zarr"), "w").open()
    assert (tmp_path / "data.zarr" / "notes.txt").read_text() == "mine"


def test_a_file_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "run.zarr").write_text("")
    with pytest.raises(NotADirectoryError):
        ZarrBackend(str(tmp_path / "run.zarr"), "a").open()


STRING = Layout("string", np.dtype(object), ())
BYTES = Layout("bytes", np.dtype(object), ())


def test_a_string_value_keeps_its_trailing_nul_characters(backend: ZarrBackend) -> None:
    # as string entries do (NetCDF drops them, from values and entries alike)
    backend.create_variable("v", STRING, appendable=False)
    backend.write_value("v", "abc\x00")
    assert backend.read_value("v") == "abc\x00"


@pytest.mark.parametrize(("layout", "value"), [(BYTES, b"\x00abc"), (STRING, "résumé")])
def test_zarr_reads_a_value_the_backend_wrote(
    backend: ZarrBackend, store_path: Path, layout: Layout, value: Any
) -> None:
    # the backend encodes a str or bytes value itself (drivers/_zarr_io.py says why): the
    # object it stores is the one zarr stores, with the array's own codecs
    backend.create_variable("v", layout, appendable=False)
    backend.write_value("v", value)
    backend.sync()
    assert np.asarray(zarr.open_array(store_path / "v", mode="r")[...]).item() == value


def test_an_unwritten_bytes_value_reads_as_the_fill_value(backend: ZarrBackend) -> None:
    backend.create_variable("v", BYTES, appendable=False)
    assert backend.read_value("v") == b""


def dimension_names(path: Path, variable: str) -> list[str]:
    return list(json.loads((path / variable / "zarr.json").read_text())["dimension_names"])


def test_dimension_names_are_the_netcdf_backends(backend: ZarrBackend, store_path: Path) -> None:
    backend.create_variable("positions", Layout("numeric", np.dtype("f4"), (4, 3)), True)
    backend.create_variable("box", Layout("numeric", np.dtype("f8"), (3, 3)), False)
    assert dimension_names(store_path, "positions") == [
        "positions_entry",
        "positions_axis1",
        "positions_axis2",
    ]
    assert dimension_names(store_path, "box") == ["box_axis0", "box_axis1"]


def test_a_dimension_named_like_a_variable_gets_another_name(
    backend: ZarrBackend, store_path: Path
) -> None:
    backend.create_variable("x_entry", Layout("numeric", np.dtype("f8"), ()), False)
    backend.create_variable("x", Layout("numeric", np.dtype("f8"), ()), True)
    assert dimension_names(store_path, "x") == ["x_entry_1"]


def test_storage_options_name_the_endpoint(
    s3_bucket: str, s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    options = {"endpoint": s3_server, "client_options": {"allow_http": True}}
    url = f"s3://{s3_bucket}/run.zarr"
    with writebehind.open(url, "w", storage_options=options) as store:
        store.x.append(1.5)
    with writebehind.open(url, "r", storage_options=options) as store:
        assert store.x.read() == [1.5]


@pytest.mark.parametrize("reopened", [False, True])
def test_a_chunk_of_fill_values_is_stored_not_deleted(
    backend: ZarrBackend, store_path: Path, reopened: bool
) -> None:
    # One object put per chunk written, in every session: zarr's default deletes it instead.
    layout = Layout("numeric", np.dtype("f8"), (1 << 17,))  # 1 MiB: one entry a chunk
    backend.create_variable("x", layout, appendable=True)
    if reopened:
        backend.close()
        backend = ZarrBackend(str(store_path), "a")
        backend.open()
        list(backend.scan())
    backend.write_entries("x", 0, np.zeros((1, 1 << 17)))
    backend.sync()
    assert (store_path / "x" / "c" / "0" / "0").is_file()
    if reopened:
        backend.close()


# -- whole chunks: encoded from the engine's buffer, never kept ---------------------------
def test_an_entry_buffer_reused_after_write_entries_does_not_change_what_is_stored(
    backend: ZarrBackend, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zarr.core.codec_pipeline import BatchedCodecPipeline

    encode_batch = BatchedCodecPipeline.encode_batch

    async def late_encode_batch(self: Any, *args: Any) -> Any:
        await asyncio.sleep(0.2)  # an encoding that ran after write_entries returned
        return await encode_batch(self, *args)  # would read the buffer as reused

    monkeypatch.setattr(BatchedCodecPipeline, "encode_batch", late_encode_batch)
    backend.create_variable("x", F8, appendable=True)
    buffer = rows(0, 4)
    backend.write_entries("x", 0, buffer)
    buffer[:] = -1.0  # what the engine does with a written buffer: reuse it
    backend.commit_lengths({"x": 4}, durable=False)
    np.testing.assert_array_equal(zarr.open_array(str(store_path / "x"))[:], rows(0, 4))


def test_entries_appended_into_a_written_chunk_keep_the_chunks_entries(
    backend: ZarrBackend, store_path: Path
) -> None:
    backend.create_variable("x", F8, appendable=True)
    backend.write_entries("x", 0, rows(0, 3))  # a partial chunk, padded with fill values
    backend.commit_lengths({"x": 3}, durable=False)
    backend.write_entries("x", 3, rows(3, 4))  # into the same chunk
    backend.commit_lengths({"x": 7}, durable=False)
    np.testing.assert_array_equal(zarr.open_array(str(store_path / "x"))[:], rows(0, 7))


def test_an_entry_sliced_in_chunks_is_stored_whole(backend: ZarrBackend, store_path: Path) -> None:
    big = Layout("numeric", np.dtype("f8"), (70001, 3))  # 1.7 MB: two slices, one padded
    backend.create_variable("x", big, appendable=True)
    entries = np.random.default_rng(1).random((2, 70001, 3))
    backend.write_entries("x", 0, entries)
    backend.commit_lengths({"x": 2}, durable=False)
    np.testing.assert_array_equal(zarr.open_array(str(store_path / "x"))[:], entries)


def test_entries_appended_into_a_written_chunk_do_not_read_it_back(
    backend: ZarrBackend, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    get = zarr.storage.LocalStore.get

    async def recorded_get(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        read.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", recorded_get)
    backend.create_variable("x", F8, appendable=True)
    for start in range(0, 9, 3):  # three writes into one chunk
        backend.write_entries("x", start, rows(start, 3))
    backend.commit_lengths({"x": 9}, durable=False)
    assert [key for key in read if "/c/" in key] == []
    np.testing.assert_array_equal(zarr.open_array(str(store_path / "x"))[:], rows(0, 9))


def test_a_write_merged_into_a_stored_chunk_is_kept_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    first = ZarrBackend(str(path), "w")
    first.open()
    first.create_variable("x", F8, appendable=True)
    first.write_entries("x", 0, rows(0, 2))
    first.commit_lengths({"x": 2}, durable=False)
    first.close()
    second = ZarrBackend(str(path), "a")
    second.open()  # the chunk's entries are not in memory
    list(second.scan())
    second.write_entries("x", 2, rows(2, 2))  # merged with the stored chunk
    second.write_entries("x", 4, rows(4, 2))  # from the entries kept
    second.commit_lengths({"x": 6}, durable=False)
    second.close()
    np.testing.assert_array_equal(zarr.open_array(str(path / "x"))[:], rows(0, 6))
