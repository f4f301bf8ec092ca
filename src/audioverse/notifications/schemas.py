"""Wire shapes of follows, notification preferences and unsubscribing."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from audioverse.catalog.schemas import GenreRef, PersonRef
from audioverse.notifications.models import ReleaseAlerts
from audioverse.types import BodyId, Text

MAX_FOLLOWS_PER_KIND = 500
FEW = msgspec.Meta(max_length=MAX_FOLLOWS_PER_KIND)
SeriesName = Annotated[Text, msgspec.Meta(min_length=1, max_length=255)]
Slug = Annotated[Text, msgspec.Meta(min_length=1, max_length=100)]
Day = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
DAYS: tuple[Day, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Mailing = Literal["releases", "digest"]


class FollowsWrite(msgspec.Struct, forbid_unknown_fields=True):
    """Everything the caller follows explicitly; a list left out is emptied (PUT replaces the whole set)."""

    authors: Annotated[list[BodyId], FEW] = msgspec.field(default_factory=list)
    narrators: Annotated[list[BodyId], FEW] = msgspec.field(default_factory=list)
    series: Annotated[list[SeriesName], msgspec.Meta(max_length=MAX_FOLLOWS_PER_KIND)] = msgspec.field(
        default_factory=list
    )
    genres: Annotated[list[Slug], msgspec.Meta(max_length=MAX_FOLLOWS_PER_KIND)] = msgspec.field(default_factory=list)


class ImplicitFollows(msgspec.Struct):
    """Followed because a book of theirs is in the caller's library or finished."""

    authors: list[PersonRef]
    narrators: list[PersonRef]
    series: list[str]


class FollowsRead(msgspec.Struct):
    authors: list[PersonRef]
    narrators: list[PersonRef]
    series: list[str]
    genres: list[GenreRef]
    implicit: ImplicitFollows


class PreferencesWrite(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out keep their value."""

    new_releases: ReleaseAlerts | None = None
    weekly_digest: bool | None = None
    digest_day: Day | None = None
    digest_hour: Annotated[int, msgspec.Meta(ge=0, le=23)] | None = None
    time_zone: Annotated[Text, msgspec.Meta(min_length=1, max_length=64, description="An IANA name.")] | None = None


class PreferencesRead(msgspec.Struct):
    new_releases: ReleaseAlerts
    weekly_digest: bool
    digest_day: Day
    digest_hour: int
    time_zone: str


class Unsubscribed(msgspec.Struct):
    mailing: Mailing
    """What the link stopped: new-release alerts or the weekly digest."""
