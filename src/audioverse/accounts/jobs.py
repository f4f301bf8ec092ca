"""Account housekeeping: expired refresh and email tokens are deleted once a day."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete

from audioverse.accounts.models import EmailToken, RefreshToken
from audioverse.task_runtime import Resources, TaskSpec

CLEANUP_TASK = "accounts.delete_expired_tokens"


async def delete_expired_tokens(resources: Resources) -> int:
    """Delete every refresh and email token past its expiry; returns how many.

    An expired refresh token can no longer be presented, so its row no longer guards its family
    against reuse; an expired email link answers the same 400 whether its row exists or not.
    """
    now = datetime.now(UTC)
    deleted = 0
    async with resources.database.get_session() as session:
        for model in (RefreshToken, EmailToken):
            result = await session.execute(delete(model).where(model.expires_at < now))
            deleted += result.rowcount  # type: ignore[attr-defined]
        await session.commit()
    return deleted


TASKS = [TaskSpec(CLEANUP_TASK, delete_expired_tokens, {"schedule": [{"cron": "23 4 * * *"}]})]
