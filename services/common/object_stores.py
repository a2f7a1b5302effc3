"""The one place that builds an object store client (`obstore`) from a URL and the settings.

Used by the blob store (`CAIRN_BLOB_URL`) and by backups (`cairn backup --to URL`,
`CAIRN_BACKUP_TO`), so both reach a bucket with the same endpoint, region and credentials:

- `s3://bucket/prefix`: AWS S3 or an S3-compatible server (MinIO, Ceph RGW, R2, ...), with
  the `CAIRN_BLOB_S3_*` settings;
- `gs://bucket/prefix`: Google Cloud Storage, with the `CAIRN_BLOB_GCS_*` settings;
- `az://container/prefix` or `azure://container/prefix`: Azure Blob Storage, with the
  `CAIRN_BLOB_AZURE_*` settings.

Unset credentials leave the client to its usual environment (AWS_*, instance and pod roles,
GOOGLE_APPLICATION_CREDENTIALS, AZURE_*). Building a store reaches no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from services.common.config import Settings

OBJECT_SCHEMES = ("s3", "gs", "az", "azure")


class ObjectStoreUrlError(ValueError):
    """A URL that names no object store Cairn can use, or settings that do not fit it."""


@dataclass(frozen=True)
class ObjectUrl:
    """An object store URL taken apart: scheme, bucket (or container) and key prefix."""

    scheme: str
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")


def is_object_url(url: str) -> bool:
    """Whether `url` names an object store (s3://, gs://, az://, azure://)."""
    return urlsplit(url.strip()).scheme in OBJECT_SCHEMES


def parse_object_url(url: str) -> ObjectUrl:
    """`scheme://bucket/prefix`; ObjectStoreUrlError for anything else."""
    parts = urlsplit(url.strip())
    if parts.scheme not in OBJECT_SCHEMES or not parts.netloc:
        raise ObjectStoreUrlError(
            f"not an object store URL (s3://, gs://, az:// or azure://bucket/prefix): {url!r}"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ObjectStoreUrlError(
            "an object store URL holds a bucket and a prefix only; credentials go in settings"
        )
    return ObjectUrl(parts.scheme, parts.netloc, parts.path.strip("/"))


def open_object_store(url: str, settings: Settings) -> Any:
    """An obstore store scoped to the URL's bucket and prefix, configured from `settings`."""
    where = parse_object_url(url)
    prefix = where.prefix or None
    client_options: dict[str, Any] = {"timeout": f"{int(settings.blob_timeout_seconds)}s"}
    try:
        if where.scheme == "s3":
            return _s3(where.bucket, prefix, settings, client_options)
        if where.scheme == "gs":
            return _gcs(where.bucket, prefix, settings, client_options)
        return _azure(where.bucket, prefix, settings, client_options)
    except ObjectStoreUrlError:
        raise
    except Exception as error:
        # The client's message may quote a credential it could not parse: name the kind only.
        raise ObjectStoreUrlError(
            f"the {where.scheme}:// store could not be configured ({type(error).__name__}); "
            "check its CAIRN_BLOB_* settings"
        ) from None


def _s3(bucket: str, prefix: str | None, settings: Settings, client: dict[str, Any]) -> Any:
    from obstore.store import S3Store

    options: dict[str, Any] = {}
    if settings.blob_s3_endpoint:
        options["endpoint"] = settings.blob_s3_endpoint
    if settings.blob_s3_region:
        options["region"] = settings.blob_s3_region
    if settings.blob_s3_access_key_id:
        options["access_key_id"] = settings.blob_s3_access_key_id
    if settings.blob_s3_secret_access_key is not None:
        options["secret_access_key"] = settings.blob_s3_secret_access_key.get_secret_value()
    if settings.blob_s3_force_path_style:
        options["virtual_hosted_style_request"] = False
    if settings.blob_s3_endpoint.startswith("http://"):
        client["allow_http"] = True
    return S3Store(bucket, prefix=prefix, client_options=cast(Any, client), **options)


def _gcs(bucket: str, prefix: str | None, settings: Settings, client: dict[str, Any]) -> Any:
    from obstore.store import GCSStore

    options: dict[str, Any] = {}
    key = settings.blob_gcs_service_account_key
    if key is not None and settings.blob_gcs_service_account_path:
        raise ObjectStoreUrlError(
            "set CAIRN_BLOB_GCS_SERVICE_ACCOUNT_KEY or CAIRN_BLOB_GCS_SERVICE_ACCOUNT_PATH, "
            "not both"
        )
    if key is not None:
        options["service_account_key"] = key.get_secret_value()
    if settings.blob_gcs_service_account_path:
        options["service_account"] = settings.blob_gcs_service_account_path
    return GCSStore(bucket, prefix=prefix, client_options=cast(Any, client), **options)


def _azure(container: str, prefix: str | None, settings: Settings, client: dict[str, Any]) -> Any:
    from obstore.store import AzureStore

    options: dict[str, Any] = {}
    if settings.blob_azure_account:
        options["account_name"] = settings.blob_azure_account
    if settings.blob_azure_access_key is not None:
        options["access_key"] = settings.blob_azure_access_key.get_secret_value()
    if settings.blob_azure_endpoint:
        options["endpoint"] = settings.blob_azure_endpoint
        if settings.blob_azure_endpoint.startswith("http://"):
            client["allow_http"] = True
    return AzureStore(container, prefix=prefix, client_options=cast(Any, client), **options)


def describe_error(error: BaseException) -> str:
    """One line for a failed call to a store; the client's own message names the bucket and
    key, never the credentials."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first[:300]}"
