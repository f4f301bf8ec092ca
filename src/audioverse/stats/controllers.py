"""HTTP route of the caller's listening statistics."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.models import User
from audioverse.accounts.schemas import UserStats
from audioverse.stats.services import user_stats


class UserStatsController(Controller):
    path = "/api/users"
    tags = ["accounts"]

    @get(
        "/me/stats",
        summary="The caller's listening statistics",
        description="Listening time counts forward playback only, at most wall-clock time times speed: seeking "
        "forward adds nothing. `listening_by_day` covers the last 30 UTC days, oldest first.",
    )
    async def stats(self, request: Request[User, Any, Any], db_session: AsyncSession) -> UserStats:
        return msgspec.convert(await user_stats(db_session, request.user.id), UserStats)
