"""Audio and image object storage: the port and its adapters."""

from audioverse.config import Settings
from audioverse.storage.base import ObjectInfo, ObjectNotFound, Storage, StorageUnavailable
from audioverse.storage.local import LocalStorage
from audioverse.storage.s3 import S3Storage

__all__ = [
    "DELETE_TASK",
    "LocalStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "StorageUnavailable",
    "build_storage",
]

DELETE_TASK = "storage.delete"
"""The job that removes ``keys`` once the write that dropped them commits: ``defer(session, DELETE_TASK, keys)``."""


def build_storage(settings: Settings) -> Storage:
    """The storage adapter that the settings name."""
    if settings.storage_backend == "s3":
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key_id,
            secret_key=settings.s3_secret_access_key,
            prefix=settings.s3_prefix,
        )
    return LocalStorage(settings.resolved_storage_dir)
