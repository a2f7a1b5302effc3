"""The moto S3 server of the blob store's tests, for backups to object storage."""

from tests.blobs.conftest import s3_endpoint as s3_endpoint

__all__ = ["s3_endpoint"]
