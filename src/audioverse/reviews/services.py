"""Review rules: one per book, author-only edits, exact helpful counts, moderation, aggregates."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import msgspec
from advanced_alchemy.filters import LimitOffset
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import OffsetPagination, SQLAlchemyAsyncRepositoryService
from sqlalchemy import ColumnElement, Select, and_, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import User
from audioverse.catalog.models import Audiobook
from audioverse.db import lock_for_update, upsert_into
from audioverse.errors import Conflict, Forbidden, NotFound
from audioverse.jobs import defer
from audioverse.reviews.models import HelpfulVote, Review, ReviewStatus
from audioverse.reviews.schemas import Moderation, ReviewCreate, ReviewRead, ReviewUpdate

AGGREGATE_TASK = "reviews.recompute_aggregates"

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


class ReviewRepository(SQLAlchemyAsyncRepository[Review]):
    model_type = Review


class ReviewService(SQLAlchemyAsyncRepositoryService[Review]):
    """Every review rule and query; a change asks for its book's aggregates once it commits.

    Reviews are shown with their author's name: the provider loads ``Review.author`` with each.
    """

    repository_type = ReviewRepository
    # Two queries, so the total stays right on a page past the last review (a window count reads 0 there).
    count_with_window_function = False

    @property
    def session(self) -> AsyncSession:
        session: AsyncSession = self.repository.session
        return session

    async def _book_exists(self, audiobook_id: int) -> None:
        if await self.session.get(Audiobook, audiobook_id) is None:
            raise NotFound(f"No audiobook with id {audiobook_id}.")

    async def _recompute_later(self, audiobook_id: int) -> None:
        """The book's aggregates follow once this change has committed, and not if it does not."""
        await defer(self.session, AGGREGATE_TASK, [audiobook_id])

    async def visible_page(
        self, audiobook_id: int, page: LimitOffset, *, sort: ReviewSort, rating: int | None
    ) -> OffsetPagination[ReviewRead]:
        await self._book_exists(audiobook_id)
        conditions = [Review.audiobook_id == audiobook_id, Review.status == ReviewStatus.VISIBLE]
        if rating is not None:
            conditions.append(Review.rating == rating)
        items, total = await self.get_many_and_count(*conditions, page, order_by=[*ORDERINGS[sort], Review.id.desc()])
        return self.to_schema(items, total, filters=[page], schema_type=ReviewRead)

    async def find(self, review_id: int, *, include_hidden: bool = False) -> Review:
        review = await self.get_one_or_none(Review.id == review_id)
        if review is None or (review.status == ReviewStatus.HIDDEN and not include_hidden):
            raise NotFound(f"No review with id {review_id}.")
        return review

    async def write(self, user: User, audiobook_id: int, data: ReviewCreate) -> Review:
        """The caller's one review of the book; 409 when they already wrote it."""
        await self._book_exists(audiobook_id)
        review = Review(
            user_id=user.id, audiobook_id=audiobook_id, rating=data.rating, review_text=data.review_text, author=user
        )
        try:
            async with self.session.begin_nested():
                self.session.add(review)
        except IntegrityError as exc:
            raise Conflict("You have already reviewed this audiobook; edit that review instead.") from exc
        await self._recompute_later(audiobook_id)
        return review

    async def edit(self, user: User, review_id: int, changes: ReviewUpdate) -> Review:
        review = await self.find(review_id, include_hidden=True)
        if review.user_id != user.id:
            raise Forbidden("Only the author may edit a review.")
        if not isinstance(changes.rating, msgspec.UnsetType):
            review.rating = changes.rating
        if not isinstance(changes.review_text, msgspec.UnsetType):
            review.review_text = changes.review_text
        await self.session.flush()
        await self._recompute_later(review.audiobook_id)
        return review

    async def remove(self, user: User, review_id: int) -> None:
        review = await self.find(review_id, include_hidden=True)
        if review.user_id != user.id and not user.is_curator:
            raise Forbidden("Only the author or a curator may delete a review.")
        await self.session.delete(review)
        await self.session.flush()
        await self._recompute_later(review.audiobook_id)

    async def moderate(self, curator: User, review_id: int, data: Moderation) -> Review:
        review = await self.find(review_id, include_hidden=True)
        review.status = data.status
        review.moderation_reason = data.reason
        review.moderated_by_id = curator.id
        review.moderated_at = datetime.now(UTC)
        await self.session.flush()
        await self._recompute_later(review.audiobook_id)
        return review

    async def vote(self, user: User, review_id: int) -> Review:
        """Add the caller's helpful vote once; the count moves only when a vote row was inserted."""
        review = await self.find(review_id)
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
        review = await self.find(review_id)
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

    async def recompute_aggregates(self, audiobook_ids: Sequence[int] | None = None) -> int:
        """Set books' rating aggregates from their visible reviews; returns how many books changed.

        ``None`` means every book: the periodic repair of any drift.
        """
        if audiobook_ids is not None:
            # Recomputes of one book take turns, each reading the reviews only once it holds the book: two
            # at once could otherwise both read, and the one that read first write last. The hourly repair
            # of every book does not lock the catalog; a book it finds stale has its own recompute due.
            await lock_for_update(
                self.session, select(Audiobook.id).where(Audiobook.id.in_(audiobook_ids)).order_by(Audiobook.id)
            )
        visible = Review.status == ReviewStatus.VISIBLE
        scope = visible if audiobook_ids is None else and_(visible, Review.audiobook_id.in_(audiobook_ids))
        computed: dict[int, tuple[Decimal, int, int]] = {
            row[0]: (two_places(row[1]), int(row[2]), int(row[3]))
            for row in (await self.session.execute(_aggregates(scope))).all()
        }
        current = select(Audiobook.id, Audiobook.average_rating, Audiobook.total_ratings, Audiobook.total_reviews)
        if audiobook_ids is not None:
            current = current.where(Audiobook.id.in_(audiobook_ids))
        stale = {
            row[0]: computed.get(row[0], ZERO)
            for row in (await self.session.execute(current)).all()
            if (two_places(row[1]), row[2], row[3]) != computed.get(row[0], ZERO)
        }
        stale_ids = list(stale)
        for start in range(0, len(stale_ids), ID_BATCH):
            batch = stale_ids[start : start + ID_BATCH]
            for book in await self.session.scalars(select(Audiobook).where(Audiobook.id.in_(batch))):
                # Through the ORM, so the catalog outbox carries the new figures to the search index.
                book.average_rating, book.total_ratings, book.total_reviews = stale[book.id]
            await self.session.flush()
        return len(stale)

    async def repair_helpful_counts(self) -> None:
        """Recount every review's helpful votes (votes vanish with deleted accounts)."""
        await self.session.execute(
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


async def recompute_aggregates(session: AsyncSession, audiobook_ids: Sequence[int] | None = None) -> int:
    """:meth:`ReviewService.recompute_aggregates` in ``session`` (for tasks, which own their transaction)."""
    return await ReviewService(session=session).recompute_aggregates(audiobook_ids)


async def repair_helpful_counts(session: AsyncSession) -> None:
    """:meth:`ReviewService.repair_helpful_counts` in ``session`` (for tasks, which own their transaction)."""
    await ReviewService(session=session).repair_helpful_counts()
