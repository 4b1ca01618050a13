"""The contract suite on the memory backend, and what is the memory backend's own."""

from __future__ import annotations

import pytest

import writebehind
from writebehind.drivers.memory import MemoryBackend, MemoryFile

from .contract import DriverContract, MakeBackend


class TestMemoryBackend(DriverContract):
    @pytest.fixture
    def make_backend(self) -> MakeBackend:
        files: dict[str, MemoryFile] = {}

        def make(mode: str | None) -> MemoryBackend:
            return MemoryBackend("contract", mode, files=files)

        return make


def test_a_backend_of_its_own_keeps_its_data_between_stores() -> None:
    backend = MemoryBackend()
    with writebehind.StorageInterface(backend) as store:
        store.traj.x.append(1.0)
    with writebehind.StorageInterface(backend) as store:
        assert store.traj.x.read() == [1.0]


def test_backends_on_one_files_mapping_share_data_by_name() -> None:
    files: dict[str, MemoryFile] = {}
    with writebehind.StorageInterface(MemoryBackend("a", "w", files=files)) as store:
        store.x.write(1)
    with writebehind.StorageInterface(MemoryBackend("a", "r", files=files)) as store:
        assert store.x.read() == 1
    with pytest.raises(FileNotFoundError):
        writebehind.StorageInterface(MemoryBackend("b", "r", files=files))


def test_an_async_store_runs_on_the_memory_backend() -> None:
    import anyio

    async def main() -> list[float]:
        async with writebehind.AsyncStorageInterface(MemoryBackend()) as store:
            await store.x.append(1.0)
            return await store.x.read()

    assert anyio.run(main) == [1.0]


def test_a_missing_variable_raises_a_key_error_naming_its_path() -> None:
    backend = MemoryBackend("m", "w")
    backend.open()
    with pytest.raises(KeyError, match=r"No variable at 'traj/x'"):
        backend.read_value("traj/x")
