"""Blob stores for tests: files in a temporary directory, and S3 through a moto server that
the tests start on loopback (ended by its process id)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from cairn.cli import free_ports
from services.common.blobs import BlobStore, open_blob_store
from services.common.config import Settings


def moto_available() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, for the whole test session."""
    if not moto_available():
        pytest.skip("moto[server] is not installed")
    (port,) = free_ports(1)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def make_bucket(endpoint: str) -> str:
    """A new empty bucket on the moto server (a PUT on the bucket's path)."""
    bucket = f"cairn-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return bucket


def s3_settings(endpoint: str, data_dir: Path, prefix: str = "state") -> dict[str, object]:
    """Settings fields that put blobs into a new bucket of the moto server."""
    return {
        "blob_url": f"s3://{make_bucket(endpoint)}/{prefix}",
        "blob_s3_endpoint": endpoint,
        "blob_s3_region": "us-east-1",
        "blob_s3_access_key_id": "testing",
        "blob_s3_secret_access_key": SecretStr("testing"),
    }


@pytest.fixture(params=["filesystem", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each implementation in turn."""
    if request.param == "filesystem":
        return open_blob_store(Settings(data_dir=tmp_path))
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_blob_store(Settings(data_dir=tmp_path, **s3_settings(endpoint, tmp_path)))  # type: ignore[arg-type]
