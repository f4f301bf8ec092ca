"""Audio and image object storage: the port and its adapters."""

from audioverse.config import Settings
from audioverse.storage.base import ObjectInfo, ObjectNotFound, Storage
from audioverse.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectInfo", "ObjectNotFound", "Storage", "build_storage"]


def build_storage(settings: Settings) -> Storage:
    """The storage adapter that the settings name."""
    return LocalStorage(settings.resolved_storage_dir)
