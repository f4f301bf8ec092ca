"""Wire shapes of the recommendation routes, and the cache entries the worker writes for them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from audioverse.catalog.schemas import AudiobookRead

ReasonKind = Literal["listened_with", "same_author", "same_narrator", "same_series", "genre", "popular"]


class Reason(msgspec.Struct, omit_defaults=True):
    """Why a book is suggested, in a form a client can show ("Because you listened to …")."""

    kind: ReasonKind
    audiobook_id: int | None = None
    title: str | None = None
    genre: str | None = None


class RecommendationItem(msgspec.Struct):
    audiobook: AudiobookRead
    reason: Reason


class RecommendationPage(msgspec.Struct):
    items: list[RecommendationItem]
    total: int
    limit: int
    offset: int
    generated_at: datetime
    """When the lists behind this page were computed (now, for a shelf computed on the spot)."""


class RebuildJob(msgspec.Struct):
    job_id: str


class RebuildStatus(msgspec.Struct):
    state: Literal["idle", "running", "succeeded", "failed"] = "idle"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    users: int = 0
    books: int = 0
    interactions: int = 0
    duration_seconds: float | None = None
    error: str | None = None


class RebuildClaim(msgspec.Struct):
    """The status plus the job that owns it, as the worker receives and stores it."""

    job_id: str
    status: RebuildStatus


class Pick(msgspec.Struct, array_like=True):
    """One suggestion, as the cache keeps it (a compact array).

    The book, the book behind it (0: none), whether CF found it, its score, and for a filler from a
    genre shelf, that genre (0: the overall popular shelf).
    """

    book: int
    because: int = 0
    collaborative: bool = False
    score: float = 0.0
    genre: int = 0


class Shelf(msgspec.Struct):
    """A cached list (a user's or a book's neighbours) and when it was computed."""

    generated_at: datetime
    picks: list[Pick]


class ModelVersion(msgspec.Struct):
    version: str
    generated_at: datetime
