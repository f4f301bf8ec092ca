"""Providers of the listening services, each bound to the request's ``db_session``."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar.di import Provide

from audioverse.listening.services import BookmarkService, LibraryService, PlaybackService, ProgressService

DEPENDENCIES = {
    "progress_service": Provide(create_service_provider(ProgressService)),
    "playback_service": Provide(create_service_provider(PlaybackService)),
    "bookmark_service": Provide(create_service_provider(BookmarkService)),
    "library_service": Provide(create_service_provider(LibraryService)),
}
"""What the listening controllers ask for, by name."""
