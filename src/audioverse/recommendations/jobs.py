"""Recommendation tasks: the full rebuild (curator's and nightly) and one listener's debounced refresh."""

from __future__ import annotations

import msgspec

from audioverse.recommendations.schemas import RebuildClaim
from audioverse.recommendations.services import REBUILD_TASK, REFRESH_USER_TASK, rebuild_if_idle, refresh_user
from audioverse.recommendations.services import rebuild as rebuild_model
from audioverse.task_runtime import Resources, TaskSpec

NIGHTLY_TASK = "recommendations.nightly"


async def rebuild(claim: dict[str, object], resources: Resources) -> dict[str, object]:
    """Build the model and swap its lists in; ``claim`` is the curator's claimed job."""
    status = await rebuild_model(resources.database, resources.search_store, msgspec.convert(claim, RebuildClaim))
    result: dict[str, object] = msgspec.to_builtins(status)
    return result


async def rebuild_nightly(resources: Resources) -> dict[str, object]:
    """The scheduled rebuild; skipped while the curator's runs."""
    result: dict[str, object] = msgspec.to_builtins(await rebuild_if_idle(resources.database, resources.search_store))
    return result


async def refresh(user_id: int, resources: Resources) -> int:
    """Recompute one listener's list after their listening changed; returns its length."""
    return await refresh_user(resources.database, resources.search_store, user_id)


TASKS = [
    TaskSpec(REBUILD_TASK, rebuild),
    TaskSpec(NIGHTLY_TASK, rebuild_nightly, {"schedule": [{"cron": "40 3 * * *"}]}),
    TaskSpec(REFRESH_USER_TASK, refresh),
]
