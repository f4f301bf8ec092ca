"""Recommendation tasks: the full rebuild (curator's and nightly) and one listener's debounced refresh."""

from __future__ import annotations

from typing import Annotated, Protocol

import msgspec
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.stores.base import Store
from taskiq import Context, TaskiqDepends

from audioverse.recommendations.schemas import RebuildClaim
from audioverse.recommendations.services import rebuild as rebuild_model
from audioverse.recommendations.services import rebuild_if_idle, refresh_user


class TaskResources(Protocol):
    """What these tasks use of the worker's resources (``tasks.runtime.TaskResources``)."""

    database: SQLAlchemyAsyncConfig
    search_store: Store


def _resources(context: Annotated[Context, TaskiqDepends()]) -> TaskResources:
    resources: TaskResources = context.state.resources
    return resources


# The worker's resources, as ``tasks.runtime.Resources`` injects them; domain code cannot import tasks.
Resources = Annotated[TaskResources, TaskiqDepends(_resources)]


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
