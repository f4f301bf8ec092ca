"""What a task may use: settings, database, storage, search engine and store, opened per worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.stores.base import Store
from taskiq import AsyncBroker, Context, TaskiqDepends, TaskiqEvents, TaskiqState

from audioverse.catalog.indexing import build_search_engine, search_store_for
from audioverse.config import Settings
from audioverse.db import ensure_data_dir, sqlalchemy_config
from audioverse.jobs import TaskQueue, send_after_commit
from audioverse.storage import Storage, build_storage
from search import SearchEngine


@dataclass
class TaskResources:
    """Shared per process: one engine, one storage client, one search engine, opened at worker start."""

    settings: Settings
    database: SQLAlchemyAsyncConfig
    storage: Storage
    search: SearchEngine
    search_store: Store
    running_jobs: set[int] = field(default_factory=set)
    """Jobs this process is running: on SQLite, where no row lock says so, a second send of one skips it."""
    stop_sending_jobs: Callable[[], None] = lambda: None
    job_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """Jobs this process runs at once. A running job holds its claim's connection and opens its own, so
    without a bound a burst of jobs takes the whole pool with claims, each then waiting for a second connection."""


def install_resources(
    broker: AsyncBroker, settings: Settings, *, search: SearchEngine | None = None, search_store: Store | None = None
) -> None:
    """Open :class:`TaskResources` when the worker starts and close them when it stops.

    An in-process broker is handed the application's own search engine and store: the embedded
    engine allows one writer per index, and a memory store is only shared by sharing the object.
    """

    async def open_resources(state: TaskiqState) -> None:
        if getattr(state, "resources", None) is not None:
            return  # the in-process scheduler starts the broker a second time
        ensure_data_dir(settings)
        database = sqlalchemy_config(settings)
        state.resources = TaskResources(
            job_slots=asyncio.Semaphore(max(1, settings.database_pool_size // 2)),
            settings=settings,
            database=database,
            storage=build_storage(settings),
            search=search or build_search_engine(settings),
            search_store=search_store or search_store_for(settings),
            # Tasks write too (a recompute changes a book, which asks for a search drain).
            stop_sending_jobs=send_after_commit(database, TaskQueue(broker)),
        )

    async def close_resources(state: TaskiqState) -> None:
        resources: TaskResources | None = getattr(state, "resources", None)
        state.resources = None
        if resources is not None:
            resources.stop_sending_jobs()
            await resources.database.get_engine().dispose()
            if search is None:
                await resources.search.close()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, open_resources)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, close_resources)


def _resources(context: Annotated[Context, TaskiqDepends()]) -> TaskResources:
    resources: TaskResources = context.state.resources
    return resources


Resources = Annotated[TaskResources, TaskiqDepends(_resources)]
