from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pint
import pytest
from anyio.from_thread import start_blocking_portal
from faces import Awaited, opened

import writebehind
from writebehind.drivers.memory import MemoryBackend, MemoryFile

#: The event loops every async test runs on (anyio_backend's parameters).
ANYIO_BACKENDS = ("asyncio", "trio")


@pytest.fixture(params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio (anyio's pytest plugin)."""
    return str(request.param)


@pytest.fixture
def nc_path(tmp_path: Path) -> Path:
    return tmp_path / "run.nc"


#: The backends a module marked ``both_backends`` runs its store tests on.
BACKENDS = ("netcdf", "memory")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_backends: run the module's tests that use the store fixtures (store, reopen, "
        "make_driver) on the netCDF and the memory backend",
    )
    config.addinivalue_line(
        "markers",
        "file_specific(reason): a test of a both_backends module that concerns netCDF "
        "files: skipped on the memory backend, with the reason",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("backend_kind", BACKENDS, indirect=True)


@pytest.fixture
def backend_kind(request: pytest.FixtureRequest) -> str:
    """The backend the store fixtures open: "netcdf", or "memory" in both_backends modules."""
    kind = str(getattr(request, "param", "netcdf"))
    marker = request.node.get_closest_marker("file_specific")
    if kind == "memory" and marker is not None:
        pytest.skip(f"concerns netCDF files: {marker.args[0] if marker.args else ''}")
    return kind


@pytest.fixture
def make_driver(
    backend_kind: str,
) -> Callable[[str | Path, str | None], writebehind.StorageIODriver | writebehind.NetCDFIODriver]:
    """``make_driver(path, mode)``: what a store opens at ``path`` on the test's backend
    (memory backends share one mapping of names, as files share a directory)."""
    files: dict[str, MemoryFile] = {}

    def make(
        path: str | Path, mode: str | None = None
    ) -> writebehind.StorageIODriver | writebehind.NetCDFIODriver:
        if backend_kind == "memory":
            return MemoryBackend(str(path), mode, files=files)
        return writebehind.NetCDFIODriver(str(path), mode)

    return make


@pytest.fixture
def store(nc_path: Path, make_driver: Any) -> Iterator[writebehind.StorageInterface]:
    s = writebehind.StorageInterface(make_driver(nc_path, "w"))
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _application_registry_flags() -> Iterator[None]:
    """Keep one test's change of the application registry's flags out of the next tests.

    Importing pint_xarray sets ``force_ndarray_like`` on pint's application registry for the
    rest of the process, after which ``300 * ureg.kelvin`` has a 0-d array as magnitude and
    ``float32_array * ureg.nm`` a float64 one. A test that needs pint_xarray sets the
    registry up itself (``pint_xarray.setup_registry``); every other test sees pint's
    defaults, whatever ran before it.
    """
    registry = pint.get_application_registry().get()
    flags = registry.force_ndarray, registry.force_ndarray_like
    yield
    registry.force_ndarray, registry.force_ndarray_like = flags


@pytest.fixture
def ureg() -> pint.UnitRegistry:
    return pint.get_application_registry()  # type: ignore[return-value]


@pytest.fixture
def open_store(make_driver: Any) -> Callable[..., writebehind.StorageInterface]:
    """``open_store(path, mode=None, **options)``: a store at ``path`` on the test's backend
    (``writebehind.open`` for netCDF files)."""

    def open_store(
        path: str | Path, mode: str | None = None, **options: Any
    ) -> writebehind.StorageInterface:
        return writebehind.StorageInterface(make_driver(path, mode), **options)

    return open_store


@pytest.fixture
def open_async_store(make_driver: Any) -> Callable[..., writebehind.AsyncStorageInterface]:
    """``open_async_store(path, mode=None, **options)``: an async store at ``path`` on the
    test's backend (``writebehind.open_async`` for netCDF files)."""

    def open_async_store(
        path: str | Path, mode: str | None = None, **options: Any
    ) -> writebehind.AsyncStorageInterface:
        return writebehind.AsyncStorageInterface(make_driver(path, mode), **options)

    return open_async_store


# -- the behaviour suite's two faces (faces.py) --------------------------------------------
#: The faces a test that asks for ``open_face`` or ``face_store`` runs on: the sync store, and
#: the async store on each event loop.
FACES = [("sync", None), *(("async", loop) for loop in ANYIO_BACKENDS)]


@pytest.fixture(params=FACES, ids=["sync", *(f"async-{loop}" for loop in ANYIO_BACKENDS)])
def _face_and_loop(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def face(_face_and_loop: tuple[str, str | None]) -> str:
    """The store's face the test runs on: "sync" or "async"."""
    return _face_and_loop[0]


@pytest.fixture
def open_face(
    _face_and_loop: tuple[str, str | None], open_store: Any, make_driver: Any
) -> Iterator[Callable[..., Any]]:
    """``open_face(path, mode=None, **options)``: an open store on the test's face and backend,
    called the sync way on both faces (the async one through ``faces.Awaited``)."""
    face, loop = _face_and_loop
    if face == "sync":
        yield open_store
        return
    assert loop is not None
    stores: list[writebehind.AsyncStorageInterface] = []
    with start_blocking_portal(loop) as portal:

        def open_face(path: str | Path, mode: str | None = None, **options: Any) -> Awaited:
            store = writebehind.AsyncStorageInterface(make_driver(path, mode), **options)
            stores.append(store)
            return Awaited(portal.call(opened, store), portal)

        yield open_face
        for store in stores:  # before the loop stops, as the sync stores close at the latest
            if not store.closed:
                portal.call(store.aclose)


@pytest.fixture
def face_store(nc_path: Path, open_face: Any) -> Iterator[Any]:
    """A store opened for writing at ``nc_path``, on the test's face and backend."""
    store = open_face(nc_path, "w")
    yield store
    store.close()


@pytest.fixture
def reopen(open_store: Any) -> Callable[..., writebehind.StorageInterface]:
    """``reopen(path, mode="r")``: a new store on a file written earlier in the test."""

    def reopen(path: str | Path, mode: str | None = "r") -> writebehind.StorageInterface:
        return open_store(path, mode)

    return reopen


# -- an S3-protocol server on 127.0.0.1 (moto), for the object-storage tests ------------------
# ``s3_server`` starts moto's threaded server once per session on a free loopback port and
# points the standard AWS variables at it (dummy credentials; instance metadata disabled, so
# nothing looks beyond loopback for credentials); ``s3_bucket`` makes a new bucket per test.
_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server on 127.0.0.1, with the AWS_* variables set."""
    server_module = pytest.importorskip("moto.server", reason="needs moto[server] (test extra)")
    pytest.importorskip("obstore", reason="the Zarr backend needs the zarr extra")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "writebehind-test",
            "AWS_SECRET_ACCESS_KEY": "writebehind-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        yield endpoint
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A new, empty bucket on the test server."""
    import boto3

    name = f"writebehind-test-{next(_buckets)}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
