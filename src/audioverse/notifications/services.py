"""Follows (explicit and implied by a listener's books), notification preferences, and unsubscribing."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from functools import cache
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import Select, String, cast, delete, func, insert, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.catalog.models import (
    Audiobook,
    Author,
    Genre,
    Narrator,
    audiobook_author,
    audiobook_genre,
    audiobook_narrator,
)
from audioverse.catalog.schemas import GenreRef, PersonRef
from audioverse.errors import FieldError, Unprocessable
from audioverse.listening.models import LibraryEntry, ListeningProgress
from audioverse.notifications.models import Follow, FollowKind, NotificationPreferences, ReleaseAlerts
from audioverse.notifications.schemas import (
    DAYS,
    FollowsRead,
    FollowsWrite,
    ImplicitFollows,
    Mailing,
    PreferencesRead,
    PreferencesWrite,
)

DEFAULT_PREFERENCES: dict[str, Any] = {
    "new_releases": ReleaseAlerts.DAILY,
    "weekly_digest": True,
    "digest_day": 0,
    "digest_hour": 8,
    "time_zone": "UTC",
}
"""What a listener who never chose gets: a daily summary of new releases and the digest on Mondays at 8 UTC."""


@cache
def known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def owned_books(user_id: Any = None) -> Any:
    """(user_id, audiobook_id) of the books listeners keep in their library or finished: implicit follows."""
    library = select(LibraryEntry.user_id, LibraryEntry.audiobook_id)
    finished = select(ListeningProgress.user_id, ListeningProgress.audiobook_id).where(ListeningProgress.is_completed)
    if user_id is not None:
        library, finished = (
            library.where(LibraryEntry.user_id == user_id),
            finished.where(ListeningProgress.user_id == user_id),
        )
    return union(library, finished).subquery("owned")


def series_key(name: str) -> str:
    """A series as followed: lowercased with single spaces, so "The Expanse" and "the  expanse" are one."""
    return " ".join(name.lower().split())


def followers_of(book_ids: Sequence[int] | Select[Any]) -> Any:
    """(user_id, audiobook_id) for every listener who follows one of ``book_ids``, explicitly or through their books.

    ``book_ids`` may be a SELECT of ids: a list is bound one parameter an id, and both databases refuse
    a statement with more than 32,766 of them.

    Explicit: an author, narrator or genre (by id) or a series (by name) of the book. Implicit: a book
    in their library or finished shares an author, narrator or series with it.
    """
    statements: list[Any] = []
    for kind, link, column in (
        (FollowKind.AUTHOR, audiobook_author, "author_id"),
        (FollowKind.NARRATOR, audiobook_narrator, "narrator_id"),
        (FollowKind.GENRE, audiobook_genre, "genre_id"),
    ):
        statements.append(
            select(Follow.user_id, link.c.audiobook_id)
            .join(link, Follow.target == cast(link.c[column], String))
            .where(Follow.kind == kind, link.c.audiobook_id.in_(book_ids))
        )
        if kind is FollowKind.GENRE:
            continue  # a genre is too broad to follow by owning one of its books
        owned = owned_books()
        mine, theirs = link.alias(f"mine_{column}"), link.alias(f"theirs_{column}")
        statements.append(
            select(owned.c.user_id, theirs.c.audiobook_id)
            .join(mine, mine.c.audiobook_id == owned.c.audiobook_id)
            .join(theirs, theirs.c[column] == mine.c[column])
            .where(theirs.c.audiobook_id.in_(book_ids), theirs.c.audiobook_id != owned.c.audiobook_id)
        )
    new_book = Audiobook.__table__.alias("new_book")
    statements.append(
        select(Follow.user_id, new_book.c.id)
        .join(new_book, Follow.target == func.lower(new_book.c.series))
        .where(Follow.kind == FollowKind.SERIES, new_book.c.id.in_(book_ids))
    )
    owned = owned_books()
    kept = Audiobook.__table__.alias("kept_book")
    statements.append(
        select(owned.c.user_id, new_book.c.id)
        .join(kept, kept.c.id == owned.c.audiobook_id)
        .join(new_book, func.lower(new_book.c.series) == func.lower(kept.c.series))
        .where(new_book.c.id.in_(book_ids), new_book.c.id != kept.c.id)
    )
    return union(*statements)


class FollowRepository(SQLAlchemyAsyncRepository[Follow]):
    model_type = Follow


class NotificationService(SQLAlchemyAsyncRepositoryService[Follow]):
    """A listener's follows and notification preferences."""

    repository_type = FollowRepository

    @property
    def session(self) -> AsyncSession:
        session: AsyncSession = self.repository.session
        return session

    async def follows(self, user_id: int) -> FollowsRead:
        explicit: dict[FollowKind, list[str]] = {kind: [] for kind in FollowKind}
        for kind, target in await self.session.execute(
            select(Follow.kind, Follow.target).where(Follow.user_id == user_id)
        ):
            explicit[FollowKind(kind)].append(target)
        owned = owned_books(user_id)
        implied: dict[str, list[tuple[int, str]]] = {"authors": [], "narrators": []}
        for label, model, link, column in (
            ("authors", Author, audiobook_author, "author_id"),
            ("narrators", Narrator, audiobook_narrator, "narrator_id"),
        ):
            implied[label] = list(
                await self.session.execute(
                    select(model.id, model.name)
                    .join(link, link.c[column] == model.id)
                    .join(owned, owned.c.audiobook_id == link.c.audiobook_id)
                    .distinct()
                    .order_by(model.name)
                )
            )
        kept_series = select(Audiobook.series).join(owned, owned.c.audiobook_id == Audiobook.id)
        implied_series = sorted({series for series in await self.session.scalars(kept_series) if series})
        return FollowsRead(
            authors=await _people(self.session, Author, explicit[FollowKind.AUTHOR]),
            narrators=await _people(self.session, Narrator, explicit[FollowKind.NARRATOR]),
            series=sorted(explicit[FollowKind.SERIES]),
            genres=[
                GenreRef(id=genre.id, name=genre.name, slug=genre.slug)
                for genre in await self.session.scalars(
                    select(Genre).where(cast(Genre.id, String).in_(explicit[FollowKind.GENRE])).order_by(Genre.name)
                )
            ],
            implicit=ImplicitFollows(
                authors=[PersonRef(id=i, name=n) for i, n in implied["authors"]],
                narrators=[PersonRef(id=i, name=n) for i, n in implied["narrators"]],
                series=implied_series,
            ),
        )

    async def replace_follows(self, user_id: int, wanted: FollowsWrite) -> FollowsRead:
        """Make ``wanted`` the caller's explicit follows; 422 naming the first id or slug that does not exist."""
        targets: list[tuple[FollowKind, str]] = []
        people: tuple[tuple[str, FollowKind, type[Author] | type[Narrator]], ...] = (
            ("authors", FollowKind.AUTHOR, Author),
            ("narrators", FollowKind.NARRATOR, Narrator),
        )
        for field, kind, model in people:
            ids = sorted(set(getattr(wanted, field)))
            found = set(await self.session.scalars(select(model.id).where(model.id.in_(ids)))) if ids else set()
            if missing := [i for i in ids if i not in found]:
                raise Unprocessable(
                    f"No {kind.value} with id {missing[0]}.", errors=[FieldError(field=field, message="unknown id")]
                )
            targets += [(kind, str(i)) for i in ids]
        slugs = sorted(set(wanted.genres))
        genres: dict[str, int] = {}
        if slugs:
            genres = {
                slug: genre_id
                for slug, genre_id in await self.session.execute(
                    select(Genre.slug, Genre.id).where(Genre.slug.in_(slugs))
                )
            }
        if missing_slugs := [slug for slug in slugs if slug not in genres]:
            raise Unprocessable(
                f"No genre {missing_slugs[0]!r}.", errors=[FieldError(field="genres", message="unknown slug")]
            )
        targets += [(FollowKind.GENRE, str(genres[slug])) for slug in slugs]
        targets += [(FollowKind.SERIES, key) for key in sorted({series_key(name) for name in wanted.series})]
        await self.session.execute(delete(Follow).where(Follow.user_id == user_id))
        if targets:
            rows = [{"user_id": user_id, "kind": kind, "target": target} for kind, target in targets]
            await self.session.execute(insert(Follow), rows)
        return await self.follows(user_id)

    async def clear_follows(self, user_id: int) -> None:
        await self.session.execute(delete(Follow).where(Follow.user_id == user_id))

    async def _stored_preferences(self, user_id: int) -> NotificationPreferences | None:
        mine = NotificationPreferences.user_id == user_id
        return await self.session.scalar(select(NotificationPreferences).where(mine))

    async def _preferences_row(self, user_id: int) -> NotificationPreferences:
        row = await self._stored_preferences(user_id)
        if row is None:
            row = NotificationPreferences(user_id=user_id, **DEFAULT_PREFERENCES)
            self.session.add(row)
        return row

    async def preferences(self, user_id: int) -> PreferencesRead:
        return preferences_read(await self._stored_preferences(user_id))

    async def update_preferences(self, user_id: int, wanted: PreferencesWrite) -> PreferencesRead:
        if wanted.time_zone is not None and wanted.time_zone not in known_time_zones():
            raise Unprocessable(
                f"{wanted.time_zone!r} is not an IANA time zone name (such as Europe/Paris).",
                errors=[FieldError(field="time_zone", message="unknown time zone")],
            )
        row = await self._preferences_row(user_id)
        if wanted.new_releases is not None:
            row.new_releases = wanted.new_releases
        if wanted.weekly_digest is not None:
            row.weekly_digest = wanted.weekly_digest
        if wanted.digest_day is not None:
            row.digest_day = DAYS.index(wanted.digest_day)
        if wanted.digest_hour is not None:
            row.digest_hour = wanted.digest_hour
        if wanted.time_zone is not None:
            row.time_zone = wanted.time_zone
        await self.session.flush()
        return preferences_read(row)

    async def unsubscribe(self, user_id: int, mailing: Mailing) -> None:
        row = await self._preferences_row(user_id)
        if mailing == "digest":
            row.weekly_digest = False
        else:
            row.new_releases = ReleaseAlerts.OFF
        await self.session.flush()


def preferences_read(row: NotificationPreferences | None) -> PreferencesRead:
    row = row or NotificationPreferences(**DEFAULT_PREFERENCES)
    return PreferencesRead(
        new_releases=row.new_releases,
        weekly_digest=row.weekly_digest,
        digest_day=DAYS[row.digest_day],
        digest_hour=row.digest_hour,
        time_zone=row.time_zone,
    )


async def _people(session: AsyncSession, model: type[Author] | type[Narrator], targets: list[str]) -> list[PersonRef]:
    ids = [int(target) for target in targets]
    if not ids:
        return []
    rows = await session.execute(select(model.id, model.name).where(model.id.in_(ids)).order_by(model.name))
    return [PersonRef(id=i, name=n) for i, n in rows]
