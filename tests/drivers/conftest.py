"""An S3-protocol server on 127.0.0.1 (moto) for the object-storage tests.

``s3_server`` starts moto's threaded server once per session on a free loopback port and
points the standard AWS variables at it (dummy credentials; instance metadata disabled, so
nothing looks beyond loopback for credentials); ``s3_bucket`` makes a new bucket per test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

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
