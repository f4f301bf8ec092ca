"""The numbers behind ``/api/users/me/stats/``: listening time, streaks, favourites, reviews, bookmarks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from sqlalchemy import Column, ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.schemas import UserStats
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


class LedgerRepository(SQLAlchemyAsyncRepository[ListeningLedger]):
    model_type = ListeningLedger


class StatsService(SQLAlchemyAsyncRepositoryService[ListeningLedger]):
    """A listener's statistics, read from the listening ledger and the rows around it."""

    repository_type = LedgerRepository

    @property
    def session(self) -> AsyncSession:
        session: AsyncSession = self.repository.session
        return session

    async def _count(self, *where: ColumnElement[bool]) -> int:
        return await self.session.scalar(select(func.count()).where(*where)) or 0

    async def _most_listened(
        self,
        ledger: ColumnElement[bool],
        model: type[Genre | Author],
        link_audiobook: Column[Any],
        link_target: Column[Any],
    ) -> list[dict[str, Any]]:
        """The ``TOP_ENTRIES`` genres or authors the ``ledger`` rows spent most time on, with those seconds."""
        listened = func.sum(ListeningLedger.seconds)
        rows = await self.session.execute(
            select(model.id, model.name, listened)
            .join(link_audiobook.table, link_audiobook == ListeningLedger.audiobook_id)
            .join(model, model.id == link_target)
            .where(ledger)
            .group_by(model.id, model.name)
            .order_by(listened.desc())
            .limit(TOP_ENTRIES)
        )
        return [{"id": row[0], "name": row[1], "seconds": round(float(row[2]), 3)} for row in rows]

    async def for_user(self, user_id: int) -> UserStats:
        """The numbers behind ``/api/users/me/stats/``, computed from the ledger in a few queries."""
        ledger = ListeningLedger.user_id == user_id
        total = (
            await self.session.scalar(select(func.coalesce(func.sum(ListeningLedger.seconds), 0.0)).where(ledger))
            or 0.0
        )
        per_day = dict(
            (
                await self.session.execute(
                    select(ListeningLedger.day, func.sum(ListeningLedger.seconds))
                    .where(ledger)
                    .group_by(ListeningLedger.day)
                )
            ).all()
        )
        today = utcnow().date()
        current, longest = streaks([day for day, seconds in per_day.items() if seconds > 0], today)
        window = [today - timedelta(days=offset) for offset in range(STATS_DAYS - 1, -1, -1)]
        stats = {
            "total_listening_seconds": round(float(total), 3),
            "audiobooks_started": await self._count(ListeningProgress.user_id == user_id),
            "audiobooks_completed": await self._count(
                ListeningProgress.user_id == user_id, ListeningProgress.is_completed.is_(True)
            ),
            "current_streak_days": current,
            "longest_streak_days": longest,
            "listening_by_day": [{"date": day, "seconds": round(float(per_day.get(day, 0.0)), 3)} for day in window],
            "top_genres": await self._most_listened(
                ledger, Genre, audiobook_genre.c.audiobook_id, audiobook_genre.c.genre_id
            ),
            "top_authors": await self._most_listened(
                ledger, Author, audiobook_author.c.audiobook_id, audiobook_author.c.author_id
            ),
            "reviews_written": await self._count(Review.user_id == user_id),
            "bookmarks_count": await self._count(Bookmark.user_id == user_id),
        }
        return self.to_schema(stats, schema_type=UserStats)
