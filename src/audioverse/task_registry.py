"""The one registry of tasks: every domain's task list, composed by name onto whichever broker runs them."""

from __future__ import annotations

from litestar.stores.base import Store
from taskiq import AsyncBroker

from audioverse import mail_jobs, system_jobs
from audioverse.accounts import jobs as accounts_jobs
from audioverse.catalog import jobs as catalog_jobs
from audioverse.catalog.indexing import build_search_engine, search_store_for
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.config import Settings
from audioverse.listening import jobs as listening_jobs
from audioverse.notifications import jobs as notifications_jobs
from audioverse.recommendations import jobs as recommendations_jobs
from audioverse.recommendations.services import digest_picks
from audioverse.reviews import jobs as reviews_jobs
from audioverse.storage import jobs as storage_jobs
from audioverse.task_runtime import TaskSpec, install_resources
from search import SearchEngine


def compose(*task_lists: list[TaskSpec]) -> dict[str, TaskSpec]:
    """The tasks by name; two tasks claiming one name is a programming error."""
    tasks: dict[str, TaskSpec] = {}
    for spec in (spec for task_list in task_lists for spec in task_list):
        if spec.name in tasks:
            raise ValueError(f"two tasks are named {spec.name!r}")
        tasks[spec.name] = spec
    return tasks


TASKS = compose(
    system_jobs.TASKS,
    storage_jobs.TASKS,
    mail_jobs.TASKS,
    reviews_jobs.TASKS,
    catalog_jobs.TASKS,
    recommendations_jobs.TASKS,
    accounts_jobs.TASKS,
    listening_jobs.TASKS,
    # The digest shows the listener's recommendations; notifications do not import that package itself.
    notifications_jobs.tasks(digest_picks),
)


def register_tasks(
    broker: AsyncBroker, settings: Settings, *, search: SearchEngine | None = None, search_store: Store | None = None
) -> AsyncBroker:
    """Register every task on ``broker`` and the resources they need; returns the broker.

    An in-process broker is handed the app's own ``search`` engine and ``search_store``; a worker
    process builds its own at start. The worker's database writes catalog outbox rows as the app's does.
    """
    install_resources(
        broker,
        settings,
        build_search=build_search_engine,
        build_search_store=search_store_for,
        search=search,
        search_store=search_store,
        unit_of_work_hooks=[install_catalog_outbox],
    )
    for name, spec in TASKS.items():
        broker.register_task(spec.function, task_name=name, **spec.labels)
    return broker
