"""HTTP route of the caller's listening statistics."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency

from audioverse.accounts.models import User
from audioverse.accounts.schemas import UserStats
from audioverse.stats.deps import STATS_DEPENDENCY
from audioverse.stats.services import StatsService


class UserStatsController(Controller):
    path = "/api/users"
    tags = ["accounts"]
    dependencies = STATS_DEPENDENCY

    @get(
        "/me/stats",
        summary="The caller's listening statistics",
        description="Listening time counts forward playback only, at most wall-clock time times speed: seeking "
        "forward adds nothing. `listening_by_day` covers the last 30 UTC days, oldest first.",
    )
    async def stats(self, request: Request[User, Any, Any], stats: NamedDependency[StatsService]) -> UserStats:
        return await stats.for_user(request.user.id)
