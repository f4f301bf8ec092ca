"""The one list of tasks and schedules, registered by name on whichever broker runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar.stores.base import Store
from taskiq import AsyncBroker

from audioverse.config import Settings
from audioverse.jobs import RUN_JOB_TASK, SWEEP_JOBS_TASK
from audioverse.recommendations import jobs as recommendations
from audioverse.recommendations.services import REBUILD_TASK, REFRESH_USER_TASK
from audioverse.storage import DELETE_TASK
from search import SearchEngine
from tasks import email, jobs, reviews, search_sync, storage, system
from tasks.runtime import install_resources


@dataclass(frozen=True)
class TaskSpec:
    name: str
    function: Callable[..., Awaitable[Any]]
    # Taskiq labels: ``schedule`` for periodic runs, ``retry_on_error``/``max_retries`` for retries.
    labels: dict[str, Any] = field(default_factory=dict)


RETRY = {"retry_on_error": True, "max_retries": 5}
EVERY_MINUTE = {"schedule": [{"cron": "* * * * *"}]}

TASKS = [
    TaskSpec("system.ping", system.ping),
    # Deferred jobs (audioverse.jobs.defer): each is sent after its commit, and the sweep resends any still due.
    TaskSpec(RUN_JOB_TASK, jobs.run_job, RETRY),
    TaskSpec(SWEEP_JOBS_TASK, jobs.sweep, EVERY_MINUTE),
    TaskSpec(DELETE_TASK, storage.delete_objects),
    TaskSpec("email.send", email.send_email, RETRY),
    TaskSpec("reviews.recompute_aggregates", reviews.recompute_book_aggregates, RETRY),
    TaskSpec("reviews.recompute_all", reviews.recompute_all_aggregates, {"schedule": [{"cron": "17 * * * *"}]}),
    # Each catalog commit defers a drain job; the drain every minute also catches rows written otherwise.
    TaskSpec("search.drain", search_sync.drain, {**RETRY, **EVERY_MINUTE}),
    TaskSpec("search.reindex", search_sync.rebuild),
    TaskSpec(REBUILD_TASK, recommendations.rebuild),
    TaskSpec("recommendations.nightly", recommendations.rebuild_nightly, {"schedule": [{"cron": "40 3 * * *"}]}),
    TaskSpec(REFRESH_USER_TASK, recommendations.refresh),
]


def register_tasks(
    broker: AsyncBroker, settings: Settings, *, search: SearchEngine | None = None, search_store: Store | None = None
) -> AsyncBroker:
    """Register every task on ``broker`` and the resources they need; returns the broker."""
    install_resources(broker, settings, search=search, search_store=search_store)
    for spec in TASKS:
        broker.register_task(spec.function, task_name=spec.name, **spec.labels)
    return broker
