"""Listening housekeeping: play windows that no longer hold back a count are deleted once a day."""

from __future__ import annotations

from sqlalchemy import delete

from audioverse.listening.models import PlayWindow
from audioverse.listening.services import PLAY_WINDOW, utcnow
from audioverse.task_runtime import Resources, TaskSpec

CLEANUP_TASK = "listening.delete_past_play_windows"


async def delete_past_play_windows(resources: Resources) -> int:
    """Delete the windows older than :data:`PLAY_WINDOW` (the next play counts either way); returns how many."""
    async with resources.database.get_session() as session:
        result = await session.execute(delete(PlayWindow).where(PlayWindow.counted_at <= utcnow() - PLAY_WINDOW))
        await session.commit()
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted


TASKS = [TaskSpec(CLEANUP_TASK, delete_past_play_windows, {"schedule": [{"cron": "29 4 * * *"}]})]
