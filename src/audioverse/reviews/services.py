"""Review rules: one per book, author-only edits, exact helpful counts, moderation, aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook
from audioverse.db import upsert_into
from audioverse.errors import Conflict, Forbidden, NotFound
from audioverse.reviews.models import HelpfulVote, Review, ReviewStatus

ReviewSort = Literal["-helpful_count", "-created_at", "-rating", "rating"]
ORDERINGS = {
    "-helpful_count": (Review.helpful_count.desc(), Review.created_at.desc()),
    "-created_at": (Review.created_at.desc(),),
    "-rating": (Review.rating.desc(), Review.created_at.desc()),
    "rating": (Review.rating.asc(), Review.created_at.desc()),
}
# A helpful count is not an edit: naming the column in SET keeps the audit base's `onupdate` from
# stamping the time of the vote into the review's updated_at.
KEEP_UPDATED_AT = {"updated_at": Review.updated_at}


class Reviews:
    """Review workflows for one request's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _book_exists(self, audiobook_id: int) -> None:
        if await self.session.get(Audiobook, audiobook_id) is None:
            raise NotFound(f"No audiobook with id {audiobook_id}.")

    async def visible_page(
        self, audiobook_id: int, *, sort: ReviewSort, rating: int | None, limit: int, offset: int
    ) -> tuple[Sequence[Review], int]:
        await self._book_exists(audiobook_id)
        conditions = [Review.audiobook_id == audiobook_id, Review.status == ReviewStatus.VISIBLE]
        if rating is not None:
            conditions.append(Review.rating == rating)
        statement = (
            select(Review)
            .where(*conditions)
            .options(selectinload(Review.author))
            .order_by(*ORDERINGS[sort], Review.id.desc())
            .limit(limit)
            .offset(offset)
        )
        total = await self.session.scalar(select(func.count()).select_from(Review).where(*conditions)) or 0
        return (await self.session.scalars(statement)).all(), total

    async def get(self, review_id: int, *, include_hidden: bool = False) -> Review:
        review = await self.session.scalar(
            select(Review).where(Review.id == review_id).options(selectinload(Review.author))
        )
        if review is None or (review.status == ReviewStatus.HIDDEN and not include_hidden):
            raise NotFound(f"No review with id {review_id}.")
        return review

    async def create(self, user: User, audiobook_id: int, rating: int, text: str) -> Review:
        await self._book_exists(audiobook_id)
        review = Review(user_id=user.id, audiobook_id=audiobook_id, rating=rating, review_text=text, author=user)
        try:
            async with self.session.begin_nested():
                self.session.add(review)
        except IntegrityError as exc:
            raise Conflict("You have already reviewed this audiobook; edit that review instead.") from exc
        return review

    async def update(self, user: User, review_id: int, rating: int | None, text: str | None) -> Review:
        review = await self.get(review_id, include_hidden=True)
        if review.user_id != user.id:
            raise Forbidden("Only the author may edit a review.")
        if rating is not None:
            review.rating = rating
        if text is not None:
            review.review_text = text
        await self.session.flush()
        return review

    async def delete(self, user: User, review_id: int) -> int:
        review = await self.get(review_id, include_hidden=True)
        if review.user_id != user.id and not user.is_curator:
            raise Forbidden("Only the author or a curator may delete a review.")
        await self.session.delete(review)
        await self.session.flush()
        return review.audiobook_id

    async def moderate(self, curator: User, review_id: int, status: ReviewStatus, reason: str) -> Review:
        review = await self.get(review_id, include_hidden=True)
        review.status = status
        review.moderation_reason = reason
        review.moderated_by_id = curator.id
        review.moderated_at = datetime.now(UTC)
        await self.session.flush()
        return review

    async def vote(self, user: User, review_id: int) -> Review:
        """Add the caller's helpful vote once; the count moves only when a vote row was inserted."""
        review = await self.get(review_id)
        if review.user_id == user.id:
            raise Forbidden("You cannot vote for your own review.")
        inserted = await self.session.execute(
            upsert_into(self.session, HelpfulVote)
            .values(user_id=user.id, review_id=review_id, created_at=func.now(), updated_at=func.now())
            .on_conflict_do_nothing(index_elements=["user_id", "review_id"])
        )
        if inserted.rowcount == 1:  # type: ignore[attr-defined]
            await self._shift_helpful(review_id, +1)
        await self.session.refresh(review, attribute_names=["helpful_count"])
        return review

    async def unvote(self, user: User, review_id: int) -> Review:
        review = await self.get(review_id)
        removed = await self.session.execute(
            delete(HelpfulVote).where(HelpfulVote.user_id == user.id, HelpfulVote.review_id == review_id)
        )
        if removed.rowcount == 1:  # type: ignore[attr-defined]
            await self._shift_helpful(review_id, -1)
        await self.session.refresh(review, attribute_names=["helpful_count"])
        return review

    async def _shift_helpful(self, review_id: int, delta: int) -> None:
        # Computed by the database under the row's lock: concurrent votes never overwrite each other.
        await self.session.execute(
            update(Review)
            .where(Review.id == review_id)
            .values(helpful_count=Review.helpful_count + delta, **KEEP_UPDATED_AT)
            .execution_options(synchronize_session=False)
        )


ZERO = (Decimal("0.00"), 0, 0)
ID_BATCH = 500  # SQLite caps the number of bound parameters in one statement


def two_places(value: float | Decimal | None) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _aggregates(visible_only: ColumnElement[bool]) -> Select[Any]:
    return (
        select(
            Review.audiobook_id,
            func.avg(Review.rating),
            func.count(),
            func.count(case((func.length(Review.review_text) > 0, 1))),
        )
        .where(visible_only)
        .group_by(Review.audiobook_id)
    )


async def recompute_aggregates(session: AsyncSession, audiobook_ids: Sequence[int] | None = None) -> int:
    """Set books' rating aggregates from their visible reviews; returns how many books changed.

    ``None`` means every book: the periodic repair of any drift.
    """
    visible = Review.status == ReviewStatus.VISIBLE
    scope = visible if audiobook_ids is None else and_(visible, Review.audiobook_id.in_(audiobook_ids))
    computed: dict[int, tuple[Decimal, int, int]] = {
        row[0]: (two_places(row[1]), int(row[2]), int(row[3]))
        for row in (await session.execute(_aggregates(scope))).all()
    }
    current = select(Audiobook.id, Audiobook.average_rating, Audiobook.total_ratings, Audiobook.total_reviews)
    if audiobook_ids is not None:
        current = current.where(Audiobook.id.in_(audiobook_ids))
    stale = {
        row[0]: computed.get(row[0], ZERO)
        for row in (await session.execute(current)).all()
        if (two_places(row[1]), row[2], row[3]) != computed.get(row[0], ZERO)
    }
    stale_ids = list(stale)
    for start in range(0, len(stale_ids), ID_BATCH):
        batch = stale_ids[start : start + ID_BATCH]
        for book in await session.scalars(select(Audiobook).where(Audiobook.id.in_(batch))):
            # Through the ORM, so the catalog outbox carries the new figures to the search index.
            book.average_rating, book.total_ratings, book.total_reviews = stale[book.id]
        await session.flush()
    return len(stale)


async def repair_helpful_counts(session: AsyncSession) -> None:
    """Recount every review's helpful votes (votes vanish with deleted accounts)."""
    await session.execute(
        update(Review)
        .values(
            helpful_count=select(func.count())
            .where(HelpfulVote.review_id == Review.id)
            .correlate(Review)
            .scalar_subquery(),
            **KEEP_UPDATED_AT,
        )
        .execution_options(synchronize_session=False)
    )
