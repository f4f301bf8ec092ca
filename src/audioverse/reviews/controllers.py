"""HTTP routes of reviews: listing, writing, helpful votes and moderation."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, HttpMethod, Request, Response, delete, get, post, route
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from audioverse.accounts.auth import PUBLIC, requires_curator, requires_verified
from audioverse.accounts.models import User
from audioverse.errors import problem_responses
from audioverse.reviews.deps import REVIEWS_DEPENDENCY
from audioverse.reviews.schemas import Moderation, ReviewCreate, ReviewRead, ReviewUpdate
from audioverse.reviews.services import ReviewService, ReviewSort
from audioverse.types import Id, ListPage, Page

NOT_FOUND = problem_responses(HTTPStatus.NOT_FOUND)
WRITE_ERRORS = problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND, HTTPStatus.UNPROCESSABLE_ENTITY)


class BookReviewsController(Controller):
    path = "/api/audiobooks/{audiobook_id:int}/reviews"
    tags = ["reviews"]
    dependencies = REVIEWS_DEPENDENCY

    @get("/", summary="Visible reviews of an audiobook", opt=PUBLIC, responses=NOT_FOUND)
    async def list_reviews(
        self,
        audiobook_id: Id,
        reviews: NamedDependency[ReviewService],
        page: NamedDependency[Page],
        sort: Annotated[
            ReviewSort, Parameter(description="Order: most helpful, newest, or by rating.")
        ] = "-helpful_count",
        rating: Annotated[int | None, Parameter(ge=1, le=5, description="Only this rating.")] = None,
    ) -> ListPage[ReviewRead]:
        return ListPage.of(await reviews.visible_page(audiobook_id, page, sort=sort, rating=rating))

    @post(
        "/",
        summary="Review an audiobook (verified users; one per book)",
        guards=[requires_verified],
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT, 422),
    )
    async def create_review(
        self,
        audiobook_id: Id,
        data: JSONBody[ReviewCreate],
        reviews: NamedDependency[ReviewService],
        request: Request[User, Any, Any],
    ) -> Response[ReviewRead]:
        review = await reviews.write(request.user, audiobook_id, data)
        return Response(reviews.to_schema(review, schema_type=ReviewRead), status_code=HTTPStatus.CREATED)


class ReviewController(Controller):
    path = "/api/reviews/{review_id:int}"
    tags = ["reviews"]
    dependencies = REVIEWS_DEPENDENCY

    @route("/", http_method=[HttpMethod.PUT, HttpMethod.PATCH], summary="Edit your review", responses=WRITE_ERRORS)
    async def update_review(
        self,
        review_id: Id,
        data: JSONBody[ReviewUpdate],
        reviews: NamedDependency[ReviewService],
        request: Request[User, Any, Any],
    ) -> ReviewRead:
        return reviews.to_schema(await reviews.edit(request.user, review_id, data), schema_type=ReviewRead)

    @delete("/", summary="Delete a review (its author or a curator)", responses=WRITE_ERRORS)
    async def delete_review(
        self, review_id: Id, reviews: NamedDependency[ReviewService], request: Request[User, Any, Any]
    ) -> None:
        await reviews.remove(request.user, review_id)

    @post(
        "/helpful",
        summary="Mark a review helpful (verified users; once per user; not your own)",
        description="Leaves the review's `updated_at` alone: a vote is not an edit.",
        guards=[requires_verified],
        status_code=HTTPStatus.OK,
        responses=WRITE_ERRORS,
    )
    async def vote(
        self, review_id: Id, reviews: NamedDependency[ReviewService], request: Request[User, Any, Any]
    ) -> ReviewRead:
        return reviews.to_schema(await reviews.vote(request.user, review_id), schema_type=ReviewRead)

    @delete(
        "/helpful",
        summary="Take back your helpful vote (verified users)",
        guards=[requires_verified],
        status_code=HTTPStatus.OK,
        responses=WRITE_ERRORS,
    )
    async def unvote(
        self, review_id: Id, reviews: NamedDependency[ReviewService], request: Request[User, Any, Any]
    ) -> ReviewRead:
        return reviews.to_schema(await reviews.unvote(request.user, review_id), schema_type=ReviewRead)

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
        data: JSONBody[Moderation],
        reviews: NamedDependency[ReviewService],
        request: Request[User, Any, Any],
    ) -> ReviewRead:
        return reviews.to_schema(await reviews.moderate(request.user, review_id, data), schema_type=ReviewRead)
