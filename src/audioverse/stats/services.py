"""The numbers behind ``/api/users/me/stats/``: listening time, streaks, favourites, reviews, bookmarks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.catalog.models import Author, Genre, audiobook_author, audiobook_genre
from audioverse.listening.models import Bookmark, ListeningLedger, ListeningProgress
from audioverse.listening.services import utcnow
from audioverse.reviews.models import Review

STATS_DAYS = 30
TOP_ENTRIES = 5


def streaks(days: Sequence[date], today: date) -> tuple[int, int]:
    """(current, longest) runs of consecutive listening days; the current run may end yesterday."""
    longest = run = 0
    previous: date | None = None
    for day in sorted(set(days)):
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        longest = max(longest, run)
        previous = day
    current = run if previous is not None and (today - previous).days <= 1 else 0
    return current, longest


async def most_listened(
    session: AsyncSession,
    ledger: ColumnElement[bool],
    model: type[Genre | Author],
    link_audiobook: Column[Any],
    link_target: Column[Any],
) -> list[dict[str, Any]]:
    """The ``TOP_ENTRIES`` genres or authors the ``ledger`` rows spent most time on, with those seconds."""
    listened = func.sum(ListeningLedger.seconds)
    rows = await session.execute(
        select(model.id, model.name, listened)
        .join(link_audiobook.table, link_audiobook == ListeningLedger.audiobook_id)
        .join(model, model.id == link_target)
        .where(ledger)
        .group_by(model.id, model.name)
        .order_by(listened.desc())
        .limit(TOP_ENTRIES)
    )
    return [{"id": row[0], "name": row[1], "seconds": round(float(row[2]), 3)} for row in rows]


async def user_stats(session: AsyncSession, user_id: int) -> dict[str, Any]:
    """The numbers behind ``/api/users/me/stats/``, computed from the ledger in a few queries."""
    ledger = ListeningLedger.user_id == user_id
    total = await session.scalar(select(func.coalesce(func.sum(ListeningLedger.seconds), 0.0)).where(ledger)) or 0.0
    started = await session.scalar(select(func.count()).where(ListeningProgress.user_id == user_id)) or 0
    completed = (
        await session.scalar(
            select(func.count()).where(ListeningProgress.user_id == user_id, ListeningProgress.is_completed.is_(True))
        )
        or 0
    )
    per_day = dict(
        (
            await session.execute(
                select(ListeningLedger.day, func.sum(ListeningLedger.seconds))
                .where(ledger)
                .group_by(ListeningLedger.day)
            )
        ).all()
    )
    today = utcnow().date()
    current, longest = streaks([day for day, seconds in per_day.items() if seconds > 0], today)
    window = [today - timedelta(days=offset) for offset in range(STATS_DAYS - 1, -1, -1)]

    genres = await most_listened(session, ledger, Genre, audiobook_genre.c.audiobook_id, audiobook_genre.c.genre_id)
    authors = await most_listened(
        session, ledger, Author, audiobook_author.c.audiobook_id, audiobook_author.c.author_id
    )
    reviews = await session.scalar(select(func.count()).where(Review.user_id == user_id)) or 0
    bookmarks = await session.scalar(select(func.count()).where(Bookmark.user_id == user_id)) or 0
    return {
        "total_listening_seconds": round(float(total), 3),
        "audiobooks_started": started,
        "audiobooks_completed": completed,
        "current_streak_days": current,
        "longest_streak_days": longest,
        "listening_by_day": [{"date": day, "seconds": round(float(per_day.get(day, 0.0)), 3)} for day in window],
        "top_genres": genres,
        "top_authors": authors,
        "reviews_written": reviews,
        "bookmarks_count": bookmarks,
    }
