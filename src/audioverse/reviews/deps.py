"""Providers of the reviews service, built on the request's committing ``db_session``."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar.di import Provide
from sqlalchemy.orm import selectinload

from audioverse.reviews.models import Review
from audioverse.reviews.services import ReviewService

# Every review is shown with its author's name.
provide_reviews = create_service_provider(ReviewService, load=[selectinload(Review.author)])

REVIEWS_DEPENDENCY = {"reviews": Provide(provide_reviews)}
