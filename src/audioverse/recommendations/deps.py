"""Providers of the recommendation routes: the service, and the caller when a token is optional."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar import Request
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import bearer_user
from audioverse.accounts.models import User
from audioverse.recommendations.services import RecommendationService

provide_recommendations = create_service_provider(RecommendationService)


async def provide_optional_user(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> User | None:
    """The caller on a public route: their user with a valid bearer token, else ``None`` (anonymous)."""
    return await bearer_user(request, db_session)


RECOMMENDATION_DEPENDENCIES = {
    "recommendations": Provide(provide_recommendations),
    "optional_user": Provide(provide_optional_user),
}
