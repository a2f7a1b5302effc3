"""Object store URLs for the blob store and backups: s3://, gs://, az:// and azure:// build
the matching client with its settings, without reaching any network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from obstore.store import AzureStore, GCSStore, S3Store
from pydantic import SecretStr

from cairn.archives import DirectoryLocation, ObjectLocation, open_location
from cairn.backup import BackupError, backup
from services.common.blobs import ObjectBlobStore, open_blob_store
from services.common.config import Settings
from services.common.object_stores import (
    ObjectStoreUrlError,
    is_object_url,
    open_object_store,
    parse_object_url,
)


def _settings(tmp_path: Path, **fields: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **fields)  # type: ignore[call-arg, arg-type]


def test_urls_are_taken_apart() -> None:
    assert str(parse_object_url("gs://bucket/a/b/")) == "gs://bucket/a/b"
    where = parse_object_url("azure://container")
    assert (where.scheme, where.bucket, where.prefix) == ("azure", "container", "")
    assert is_object_url("az://c/p") and is_object_url("s3://b") and not is_object_url("/srv/x")
    for bad in ("gs:///nobucket", "ftp://host/x", "s3://key:secret@bucket/p", "gs://b/p?x=1"):
        with pytest.raises(ObjectStoreUrlError):
            parse_object_url(bad)


def _service_account_key() -> str:
    """A service account key as Google issues them (the client parses it when built)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "cairn",
            "private_key_id": "1",
            "private_key": pem,
            "client_email": "cairn@cairn.iam.gserviceaccount.com",
        }
    )


def test_gcs_with_a_service_account_key_or_its_file(tmp_path: Path) -> None:
    key = _service_account_key()
    settings = _settings(tmp_path, blob_gcs_service_account_key=SecretStr(key))
    store = open_object_store("gs://cairn-state/prod/blobs", settings)
    assert isinstance(store, GCSStore) and store.prefix == "prod/blobs"
    assert store.config["bucket"] == "cairn-state"
    blobs = open_blob_store(settings.model_copy(update={"blob_url": "gs://cairn-state/prod"}))
    assert isinstance(blobs, ObjectBlobStore)
    path = tmp_path / "key.json"
    path.write_text(key)
    from_file = _settings(tmp_path, blob_gcs_service_account_path=str(path))
    store = open_object_store("gs://cairn-state", from_file)
    assert store.config["service_account"] == str(path) and store.prefix is None


def test_a_bad_gcs_key_is_one_line_without_the_key(tmp_path: Path) -> None:
    key = json.dumps({"type": "service_account", "client_email": "x@y", "hunter2": "hunter2"})
    settings = _settings(tmp_path, blob_gcs_service_account_key=SecretStr(key))
    with pytest.raises(ObjectStoreUrlError) as refused:
        open_object_store("gs://bucket/p", settings)
    assert "hunter2" not in str(refused.value) and "\n" not in str(refused.value)
    both = settings.model_copy(update={"blob_gcs_service_account_path": "/k.json"})
    with pytest.raises(ObjectStoreUrlError, match="not both"):
        open_object_store("gs://bucket/p", both)
    # The blob store says which setting it was.
    with pytest.raises(ValueError, match="CAIRN_BLOB_URL"):
        open_blob_store(settings.model_copy(update={"blob_url": "gs://bucket/p"}))


@pytest.mark.parametrize("scheme", ["az", "azure"])
def test_azure_with_an_account_key_and_an_endpoint(tmp_path: Path, scheme: str) -> None:
    settings = _settings(
        tmp_path,
        blob_azure_account="devstoreaccount1",
        blob_azure_access_key=SecretStr("a2V5"),
        blob_azure_endpoint="http://127.0.0.1:10000/devstoreaccount1",
    )
    store = open_object_store(f"{scheme}://cairn/state", settings)
    assert isinstance(store, AzureStore) and store.prefix == "state"
    assert store.config["container_name"] == "cairn"
    assert store.config["account_name"] == "devstoreaccount1"
    assert store.client_options is not None
    assert str(store.client_options.get("allow_http")) == "true"


def test_s3_keeps_its_settings(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        blob_s3_endpoint="http://127.0.0.1:9000",
        blob_s3_region="eu-west-1",
        blob_s3_access_key_id="cairn",
        blob_s3_secret_access_key=SecretStr("s3cret"),
    )
    store = open_object_store("s3://bucket/x", settings)
    assert isinstance(store, S3Store) and store.prefix == "x"
    assert store.config["region"] == "eu-west-1" and store.config["endpoint"].endswith(":9000")


async def test_backup_targets_use_the_same_construction(tmp_path: Path) -> None:
    key = SecretStr("a2V5")
    settings = _settings(tmp_path, blob_azure_account="acct", blob_azure_access_key=key)
    location = open_location("az://backups/cairn", settings)
    assert isinstance(location, ObjectLocation)
    assert location.child("cairn-20261202T030000Z").describe() == (
        "az://backups/cairn/cairn-20261202T030000Z"
    )
    assert isinstance(open_location(str(tmp_path / "dir"), settings), DirectoryLocation)
    assert isinstance(open_location(f"file://{tmp_path}/dir", settings), DirectoryLocation)
    with pytest.raises(BackupError, match="neither a directory"):
        await backup(settings, "ftp://host/x")
