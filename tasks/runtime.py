"""What a task may use: settings, a database session factory and storage, set up per worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig
from taskiq import AsyncBroker, Context, TaskiqDepends, TaskiqEvents, TaskiqState

from audioverse.config import Settings
from audioverse.db import ensure_data_dir, sqlalchemy_config
from audioverse.storage import Storage, build_storage


@dataclass
class TaskResources:
    """Shared per process: one engine and one storage client, opened at worker start."""

    settings: Settings
    database: SQLAlchemyAsyncConfig
    storage: Storage


def install_resources(broker: AsyncBroker, settings: Settings) -> None:
    """Open :class:`TaskResources` when the worker starts and close them when it stops."""

    async def open_resources(state: TaskiqState) -> None:
        ensure_data_dir(settings)
        state.resources = TaskResources(
            settings=settings, database=sqlalchemy_config(settings), storage=build_storage(settings)
        )

    async def close_resources(state: TaskiqState) -> None:
        resources: TaskResources | None = getattr(state, "resources", None)
        if resources is not None:
            await resources.database.get_engine().dispose()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, open_resources)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, close_resources)


def _resources(context: Annotated[Context, TaskiqDepends()]) -> TaskResources:
    resources: TaskResources = context.state.resources
    return resources


Resources = Annotated[TaskResources, TaskiqDepends(_resources)]
