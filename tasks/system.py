"""Tasks about the task system itself: a round trip that proves a worker is consuming."""

from __future__ import annotations

from sqlalchemy import text

from tasks.runtime import Resources


async def ping(resources: Resources) -> str:
    """Answer ``pong`` after touching the database, proving the worker's resources work."""
    async with resources.database.get_session() as session:
        await session.execute(text("SELECT 1"))
    return "pong"
