"""HTTP routes of reviews: listing, writing, helpful votes and moderation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC, requires_curator, requires_verified
from audioverse.accounts.models import User
from audioverse.errors import problem_responses
from audioverse.jobs import defer
from audioverse.reviews.models import Review
from audioverse.reviews.schemas import Moderation, ReviewCreate, ReviewPage, ReviewRead, ReviewUpdate
from audioverse.reviews.services import Reviews, ReviewSort
from audioverse.types import Id, Page

AGGREGATE_TASK = "reviews.recompute_aggregates"
NOT_FOUND = problem_responses(HTTPStatus.NOT_FOUND)
WRITE_ERRORS = problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY)


def provide_reviews(db_session: AsyncSession) -> Reviews:
    return Reviews(db_session)


def review_read(review: Review) -> ReviewRead:
    return ReviewRead(
        id=review.id,
        audiobook_id=review.audiobook_id,
        user_id=review.user_id,
        username=review.author.username,
        rating=review.rating,
        review_text=review.review_text,
        helpful_count=review.helpful_count,
        status=review.status,
        created_at=review.created_at,
        updated_at=review.updated_at,
    )


async def recompute_after_commit(reviews: Reviews, audiobook_id: int) -> None:
    """The book's aggregates follow once this change has committed, and not if it does not."""
    await defer(reviews.session, AGGREGATE_TASK, [audiobook_id])


class BookReviewsController(Controller):
    path = "/api/audiobooks/{audiobook_id:int}/reviews"
    tags = ["reviews"]
    dependencies = {"reviews": Provide(provide_reviews, sync_to_thread=False)}

    @get("/", summary="Visible reviews of an audiobook", opt=PUBLIC, responses=NOT_FOUND)
    async def list_reviews(
        self,
        audiobook_id: Id,
        reviews: Reviews,
        page: Page,
        sort: ReviewSort = "-helpful_count",
        rating: Annotated[int | None, Parameter(ge=1, le=5, description="Only this rating.")] = None,
    ) -> ReviewPage:
        items, total = await reviews.visible_page(
            audiobook_id, sort=sort, rating=rating, limit=page.limit, offset=page.offset
        )
        return ReviewPage(items=[review_read(r) for r in items], total=total, limit=page.limit, offset=page.offset)

    @post(
        "/",
        summary="Review an audiobook (verified users; one per book)",
        guards=[requires_verified],
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, 422),
    )
    async def create_review(
        self,
        audiobook_id: Id,
        data: ReviewCreate,
        reviews: Reviews,
        request: Request[User, Any, Any],
    ) -> Response[ReviewRead]:
        review = await reviews.create(request.user, audiobook_id, data.rating, data.review_text)
        await recompute_after_commit(reviews, audiobook_id)
        return Response(review_read(review), status_code=HTTPStatus.CREATED)


class ReviewController(Controller):
    path = "/api/reviews/{review_id:int}"
    tags = ["reviews"]
    dependencies = {"reviews": Provide(provide_reviews, sync_to_thread=False)}

    @route("/", http_method=[HttpMethod.PUT, HttpMethod.PATCH], summary="Edit your review", responses=WRITE_ERRORS)
    async def update_review(
        self,
        review_id: Id,
        data: ReviewUpdate,
        reviews: Reviews,
        request: Request[User, Any, Any],
    ) -> ReviewRead:
        fields = msgspec.structs.asdict(data)
        review = await reviews.update(
            request.user,
            review_id,
            rating=None if fields["rating"] is msgspec.UNSET else fields["rating"],
            text=None if fields["review_text"] is msgspec.UNSET else fields["review_text"],
        )
        await recompute_after_commit(reviews, review.audiobook_id)
        return review_read(review)

    @delete("/", summary="Delete a review (its author or a curator)", responses=WRITE_ERRORS)
    async def delete_review(self, review_id: Id, reviews: Reviews, request: Request[User, Any, Any]) -> None:
        audiobook_id = await reviews.delete(request.user, review_id)
        await recompute_after_commit(reviews, audiobook_id)

    @post(
        "/helpful",
        summary="Mark a review helpful (verified users; once per user; not your own)",
        description="Leaves the review's `updated_at` alone: a vote is not an edit.",
        guards=[requires_verified],
        status_code=HTTPStatus.OK,
        responses=WRITE_ERRORS,
    )
    async def vote(self, review_id: Id, reviews: Reviews, request: Request[User, Any, Any]) -> ReviewRead:
        return review_read(await reviews.vote(request.user, review_id))

    @delete(
        "/helpful",
        summary="Take back your helpful vote (verified users)",
        guards=[requires_verified],
        status_code=HTTPStatus.OK,
        responses=WRITE_ERRORS,
    )
    async def unvote(self, review_id: Id, reviews: Reviews, request: Request[User, Any, Any]) -> ReviewRead:
        return review_read(await reviews.unvote(request.user, review_id))

    @post(
        "/moderate",
        summary="Hide or show a review (curators)",
        description="Hidden reviews are neither listed nor counted in the book's rating.",
        guards=[requires_curator],
        status_code=HTTPStatus.OK,
        responses=WRITE_ERRORS,
    )
    async def moderate(
        self,
        review_id: Id,
        data: Moderation,
        reviews: Reviews,
        request: Request[User, Any, Any],
    ) -> ReviewRead:
        review = await reviews.moderate(request.user, review_id, data.status, data.reason)
        await recompute_after_commit(reviews, review.audiobook_id)
        return review_read(review)
