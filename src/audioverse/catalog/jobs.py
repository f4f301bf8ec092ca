"""Search tasks of the catalog: drain the catalog outbox into the engine, and rebuild the index from scratch."""

from __future__ import annotations

import msgspec

from audioverse.catalog.indexing import REINDEX_TASK, ReindexStatus, drain_outbox, read_status, reindex
from audioverse.catalog.outbox import DRAIN_TASK
from audioverse.response_cache import bump_content_version
from audioverse.task_runtime import EVERY_MINUTE, RETRY, Resources, TaskSpec


async def drain(resources: Resources) -> int:
    """Apply every pending catalog change to the search engine; raises (and is retried) if it is down."""
    drained = await drain_outbox(resources.database, resources.search, resources.settings.search_sync_batch)
    if drained:
        # Searches cached between the change's commit and now were answered by the index without it.
        await bump_content_version(resources.search_store)
    return drained


async def rebuild(status: dict[str, object], resources: Resources) -> dict[str, object]:
    """Build a fresh index beside the live one and swap it in; ``status`` is the claimed job."""
    job = msgspec.convert(status, ReindexStatus)
    current = await read_status(resources.search_store)
    if current.state != "running" or current.job_id != job.job_id:
        # Its claim lapsed before a worker got to it (read as failed), or another reindex took its place.
        lapsed: dict[str, object] = msgspec.to_builtins(current)
        return lapsed
    finished = await reindex(resources.database, resources.search, resources.search_store, job)
    result: dict[str, object] = msgspec.to_builtins(finished)
    return result


TASKS = [
    # Each catalog commit defers a drain job; the drain every minute also catches rows written otherwise.
    TaskSpec(DRAIN_TASK, drain, {**RETRY, **EVERY_MINUTE}),
    TaskSpec(REINDEX_TASK, rebuild),
]
