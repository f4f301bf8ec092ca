"""What a task is and what it may use: task specs, and the resources opened once per worker process.

Each domain's ``jobs.py`` lists its tasks as :class:`TaskSpec` values and takes :data:`Resources` in
their signatures; :mod:`audioverse.task_registry` composes the lists by name onto a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from advanced_alchemy.config import SQLAlchemyAsyncConfig
from litestar.stores.base import Store
from taskiq import AsyncBroker, Context, TaskiqDepends, TaskiqEvents, TaskiqState

from audioverse.config import Settings
from audioverse.db import ensure_data_dir, sqlalchemy_config
from audioverse.jobs import TaskQueue, send_after_commit
from audioverse.response_cache import bump_after_commit
from audioverse.storage import Storage, build_storage
from search import SearchEngine

RETRY: dict[str, Any] = {"retry_on_error": True, "max_retries": 5}
EVERY_MINUTE: dict[str, Any] = {"schedule": [{"cron": "* * * * *"}]}


@dataclass(frozen=True)
class TaskSpec:
    """One task: the name it is sent by (wire data: queues and the job table hold it), its function, its labels."""

    name: str
    function: Callable[..., Awaitable[Any]]
    # Taskiq labels: ``schedule`` for periodic runs, ``retry_on_error``/``max_retries`` for retries.
    labels: dict[str, Any] = field(default_factory=dict)


UnitOfWorkHook = Callable[[SQLAlchemyAsyncConfig], Callable[[], None]]
"""Listens on a database config's sessions (e.g. the catalog outbox); returns the call that stops it."""


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
    stop_hooks: list[Callable[[], None]] = field(default_factory=list)
    """Unregister the unit-of-work hooks on ``database``'s sessions (the after-commit send among them)."""
    job_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """Jobs this process runs at once. A running job holds its claim's connection and opens its own, so
    without a bound a burst of jobs takes the whole pool with claims, each then waiting for a second connection."""


def install_resources(
    broker: AsyncBroker,
    settings: Settings,
    *,
    build_search: Callable[[Settings], SearchEngine],
    build_search_store: Callable[[Settings], Store],
    search: SearchEngine | None = None,
    search_store: Store | None = None,
    unit_of_work_hooks: Sequence[UnitOfWorkHook] = (),
) -> None:
    """Open :class:`TaskResources` when the worker starts and close them when it stops.

    An in-process broker is handed the application's own search engine and store: the embedded
    engine allows one writer per index, and a memory store is only shared by sharing the object.
    Otherwise ``build_search`` and ``build_search_store`` make the worker's own at its start. Every
    ``unit_of_work_hooks`` entry is installed on the worker's database, whose sessions tasks write with.
    """

    async def open_resources(state: TaskiqState) -> None:
        if getattr(state, "resources", None) is not None:
            return  # the in-process scheduler starts the broker a second time
        ensure_data_dir(settings)
        database = sqlalchemy_config(settings)
        stop_hooks = [hook(database) for hook in unit_of_work_hooks]
        # Tasks write too (a recompute changes a book, which asks for a search drain).
        stop_hooks.append(send_after_commit(database, TaskQueue(broker)))
        shared_store = search_store or build_search_store(settings)
        # A task's catalog change (a recompute's new rating) ends the cached answers that showed the old one.
        stop_hooks.append(bump_after_commit(database, shared_store))
        state.resources = TaskResources(
            job_slots=asyncio.Semaphore(max(1, settings.database_pool_size // 2)),
            settings=settings,
            database=database,
            storage=build_storage(settings),
            search=search or build_search(settings),
            search_store=shared_store,
            stop_hooks=stop_hooks,
        )

    async def close_resources(state: TaskiqState) -> None:
        resources: TaskResources | None = getattr(state, "resources", None)
        state.resources = None
        if resources is not None:
            for stop in reversed(resources.stop_hooks):
                stop()
            await resources.database.get_engine().dispose()
            if search is None:
                await resources.search.close()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, open_resources)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, close_resources)


def _resources(context: Annotated[Context, TaskiqDepends()]) -> TaskResources:
    resources: TaskResources = context.state.resources
    return resources


Resources = Annotated[TaskResources, TaskiqDepends(_resources)]
"""A task's parameter ``resources: Resources`` receives the worker's :class:`TaskResources`."""
