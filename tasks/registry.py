"""The one list of tasks and schedules, registered by name on whichever broker runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskiq import AsyncBroker

from audioverse.config import Settings
from tasks import system
from tasks.runtime import install_resources

# (task name, function, schedules in taskiq's label format)
TASKS: list[tuple[str, Callable[..., Awaitable[Any]], list[dict[str, Any]]]] = [
    ("system.ping", system.ping, []),
]


def register_tasks(broker: AsyncBroker, settings: Settings) -> AsyncBroker:
    """Register every task on ``broker`` and the resources they need; returns the broker."""
    install_resources(broker, settings)
    for name, function, schedule in TASKS:
        broker.register_task(function, task_name=name, schedule=schedule)
    return broker
