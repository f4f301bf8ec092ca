"""The one list of tasks and schedules, registered by name on whichever broker runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from taskiq import AsyncBroker

from audioverse.config import Settings
from tasks import email, reviews, system
from tasks.runtime import install_resources


@dataclass(frozen=True)
class TaskSpec:
    name: str
    function: Callable[..., Awaitable[Any]]
    # Taskiq labels: ``schedule`` for periodic runs, ``retry_on_error``/``max_retries`` for retries.
    labels: dict[str, Any] = field(default_factory=dict)


RETRY = {"retry_on_error": True, "max_retries": 5}

TASKS = [
    TaskSpec("system.ping", system.ping),
    TaskSpec("email.send", email.send_email, RETRY),
    TaskSpec("reviews.recompute_aggregates", reviews.recompute_book_aggregates, RETRY),
    TaskSpec("reviews.recompute_all", reviews.recompute_all_aggregates, {"schedule": [{"cron": "17 * * * *"}]}),
]


def register_tasks(broker: AsyncBroker, settings: Settings) -> AsyncBroker:
    """Register every task on ``broker`` and the resources they need; returns the broker."""
    install_resources(broker, settings)
    for spec in TASKS:
        broker.register_task(spec.function, task_name=spec.name, **spec.labels)
    return broker
