"""Row factories (polyfactory): a test names the columns it is about; the rest are a small MP3's.

Only the columns the schema requires without a default are generated; every other column keeps its
model default, so a row differs from a hand-built one only in what the test did not care to name.
"""

from __future__ import annotations

import secrets
from typing import Any, Generic, TypeVar

from polyfactory import Use
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory

from audioverse.catalog.models import Audiobook

T = TypeVar("T")


class RowFactory(SQLAlchemyFactory[T], Generic[T]):
    """Builds unsaved rows, setting only the required columns that have no default."""

    __is_base_factory__ = True
    __set_primary_key__ = False
    __set_foreign_keys__ = False
    __set_relationships__ = False
    __set_association_proxy__ = False

    @classmethod
    def should_column_be_set(cls, column: Any) -> bool:
        return (
            super().should_column_be_set(column)
            and not column.nullable
            and column.default is None
            and column.server_default is None
        )


class AudiobookFactory(RowFactory[Audiobook]):
    """An English hour-long MP3 audiobook, stored under a key of its own."""

    title = "Untitled"
    duration_seconds = 3600.0
    language = "en"
    format = "mp3"
    mime_type = "audio/mpeg"
    size_bytes = 1000
    audio_key = Use(lambda: f"audiobooks/{secrets.token_hex(6)}/audio.mp3")
