"""Wire shapes of the reviews API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from audioverse.reviews.models import ReviewStatus
from audioverse.types import Text

Rating = Annotated[int, msgspec.Meta(ge=1, le=5)]
ReviewText = Annotated[Text, msgspec.Meta(max_length=10000)]


class ReviewCreate(msgspec.Struct, forbid_unknown_fields=True):
    rating: Rating
    review_text: ReviewText = ""


class ReviewUpdate(msgspec.Struct, forbid_unknown_fields=True):
    rating: Rating | msgspec.UnsetType = msgspec.UNSET
    review_text: ReviewText | msgspec.UnsetType = msgspec.UNSET


class Moderation(msgspec.Struct, forbid_unknown_fields=True):
    status: ReviewStatus
    reason: Annotated[Text, msgspec.Meta(min_length=1, max_length=1000)]


class ReviewRead(msgspec.Struct):
    id: int
    audiobook_id: int
    user_id: int
    username: str
    rating: int
    review_text: str
    helpful_count: int
    status: ReviewStatus
    created_at: datetime
    updated_at: datetime
