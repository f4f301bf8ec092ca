"""HTTP routes of recommendations: the caller's shelf, a book's neighbours, the curator's rebuild."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.stores.base import Store

from audioverse.accounts.auth import PUBLIC, requires_curator
from audioverse.accounts.models import User
from audioverse.errors import problem_responses
from audioverse.jobs import TaskQueue
from audioverse.recommendations.deps import RECOMMENDATION_DEPENDENCIES
from audioverse.recommendations.schemas import RebuildJob, RebuildStatus, RecommendationPage
from audioverse.recommendations.services import RecommendationService
from audioverse.types import Id, Page, text_query

GenreSlug = Annotated[
    str | None, text_query(100, "Only books of this genre (its slug, as `GET /api/genres/` lists them).")
]


class RecommendationController(Controller):
    path = "/api/audiobooks"
    tags = ["recommendations"]
    dependencies = RECOMMENDATION_DEPENDENCIES

    @get(
        "/recommended",
        summary="Recommended for the caller (the popular shelf when anonymous)",
        description="Blends listeners like you, books like yours and what is popular in your genres. Never "
        "lists what you finished, rated 2 or less, keep in your library or are listening to.",
        opt=PUBLIC,
        cache=True,
        responses=problem_responses(HTTPStatus.NOT_FOUND),
    )
    async def recommended(
        self,
        recommendations: NamedDependency[RecommendationService],
        optional_user: NamedDependency[User | None],
        search_store: NamedDependency[Store],
        task_queue: NamedDependency[TaskQueue],
        page: NamedDependency[Page],
        genre: GenreSlug = None,
    ) -> RecommendationPage:
        return await recommendations.recommended(search_store, task_queue, optional_user, genre, page)

    @get(
        "/{audiobook_id:int}/similar",
        summary="Listeners of this book also enjoyed",
        description="Co-listened books (shared by enough listeners that none is singled out), then books "
        "sharing its series, authors, narrators or words, then its genres' popular books.",
        opt=PUBLIC,
        cache=True,
        responses=problem_responses(HTTPStatus.NOT_FOUND),
    )
    async def similar(
        self,
        audiobook_id: Id,
        recommendations: NamedDependency[RecommendationService],
        optional_user: NamedDependency[User | None],
        search_store: NamedDependency[Store],
        page: NamedDependency[Page],
    ) -> RecommendationPage:
        return await recommendations.similar(search_store, optional_user, audiobook_id, page)


class RecommendationAdminController(Controller):
    path = "/api/admin/recommendations"
    tags = ["admin"]
    guards = [requires_curator]
    dependencies = RECOMMENDATION_DEPENDENCIES

    @post(
        "/rebuild",
        summary="Rebuild the recommendation model now (curators)",
        description="202 with the job id; shelves keep answering from the current lists until the new ones "
        "swap in. 409 while a rebuild runs.",
        status_code=HTTPStatus.ACCEPTED,
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.CONFLICT),
    )
    async def rebuild(
        self, recommendations: NamedDependency[RecommendationService], search_store: NamedDependency[Store]
    ) -> RebuildJob:
        return await recommendations.start_rebuild(search_store)

    @get("/status", summary="The last recommendation rebuild (curators)")
    async def status(
        self, recommendations: NamedDependency[RecommendationService], search_store: NamedDependency[Store]
    ) -> RebuildStatus:
        return await recommendations.rebuild_status(search_store)
