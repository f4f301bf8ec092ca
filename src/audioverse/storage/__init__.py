"""Audio and image object storage: the port and its adapters."""

from audioverse.config import Settings, SettingsError
from audioverse.storage.base import ObjectInfo, ObjectNotFound, Storage, StorageUnavailable
from audioverse.storage.local import LocalStorage
from audioverse.storage.s3 import CdnSigner, S3Storage

__all__ = [
    "DELETE_TASK",
    "LocalStorage",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "StorageUnavailable",
    "build_storage",
    "cdn_signer",
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
            cdn=cdn_signer(settings),
        )
    return LocalStorage(settings.resolved_storage_dir)


def cdn_signer(settings: Settings) -> CdnSigner | None:
    """The CDN's URL signer when ``AUDIOVERSE_S3_CDN_URL`` is set; a setting missing or unusable stops the start."""
    if not settings.s3_cdn_url:
        return None
    if not settings.s3_cdn_key_pair_id or settings.s3_cdn_private_key_file is None:
        raise SettingsError(
            "AUDIOVERSE_S3_CDN_URL needs AUDIOVERSE_S3_CDN_KEY_PAIR_ID and AUDIOVERSE_S3_CDN_PRIVATE_KEY_FILE"
        )
    try:
        return CdnSigner(
            settings.s3_cdn_url, settings.s3_cdn_key_pair_id, settings.s3_cdn_private_key_file.read_bytes()
        )
    except (OSError, ValueError, TypeError) as exc:
        raise SettingsError(f"AUDIOVERSE_S3_CDN_PRIVATE_KEY_FILE is not a usable RSA private key: {exc}") from exc
