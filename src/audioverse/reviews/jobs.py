"""Rating aggregate tasks: after each review change, and a periodic full repair."""

from __future__ import annotations

from audioverse.reviews.services import AGGREGATE_TASK, recompute_aggregates, repair_helpful_counts
from audioverse.task_runtime import RETRY, Resources, TaskSpec

REPAIR_TASK = "reviews.recompute_all"


async def recompute_book_aggregates(audiobook_ids: list[int], resources: Resources) -> int:
    """Recompute the named books' aggregates; returns how many changed."""
    async with resources.database.get_session() as session:
        changed = await recompute_aggregates(session, audiobook_ids)
        await session.commit()
    return changed


async def recompute_all_aggregates(resources: Resources) -> int:
    """Repair any drift in every book's aggregates and every review's helpful count."""
    async with resources.database.get_session() as session:
        await repair_helpful_counts(session)
        changed = await recompute_aggregates(session)
        await session.commit()
    return changed


TASKS = [
    TaskSpec(AGGREGATE_TASK, recompute_book_aggregates, RETRY),
    TaskSpec(REPAIR_TASK, recompute_all_aggregates, {"schedule": [{"cron": "17 * * * *"}]}),
]
