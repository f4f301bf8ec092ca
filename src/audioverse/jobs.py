"""Background work: the Taskiq broker built from settings, and enqueueing a task by its name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqTask, InMemoryBroker, SmartRetryMiddleware
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.kicker import AsyncKicker
from taskiq.schedule_sources import LabelScheduleSource
from taskiq.scheduler.scheduler import TaskiqScheduler
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from audioverse.config import Settings

RESULT_TTL_SECONDS = 3600


def build_broker(settings: Settings) -> AsyncBroker:
    """In-process broker for the embedded profile, a Redis list queue for production."""
    # Tasks labelled ``retry_on_error`` retry with exponential backoff (e.g. SMTP or engine down).
    retries = SmartRetryMiddleware(default_delay=2, use_delay_exponent=True, max_delay_exponent=300, use_jitter=True)
    if settings.redis_url is None:
        return InMemoryBroker().with_middlewares(retries)
    result_backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
        settings.redis_url, result_ex_time=RESULT_TTL_SECONDS
    )
    broker = ListQueueBroker(settings.redis_url, queue_name=settings.task_queue_name)
    return broker.with_result_backend(result_backend).with_middlewares(retries)


class TaskQueue:
    """Asks for background work by task name, so domain code never imports the ``tasks`` package."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker

    async def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> AsyncTaskiqTask[Any]:
        """Send ``task_name`` with its arguments to the broker; the handle can await the result."""
        kicker: AsyncKicker[Any, Any] = AsyncKicker(task_name=task_name, broker=self.broker, labels={})
        return await kicker.kiq(*args, **kwargs)


def build_scheduler(broker: AsyncBroker) -> TaskiqScheduler:
    """Sends the tasks whose ``schedule`` label says when (cron), through ``broker``."""
    return TaskiqScheduler(broker=broker, sources=[LabelScheduleSource(broker)])


@asynccontextmanager
async def in_process_scheduler(broker: AsyncBroker) -> AsyncIterator[None]:
    """Periodic jobs for an in-process broker, which no separate scheduler process can reach."""
    if not isinstance(broker, InMemoryBroker):
        yield
        return
    scheduler = build_scheduler(broker)
    for source in scheduler.sources:
        await source.startup()
    await scheduler.startup()
    loop = asyncio.create_task(SchedulerLoop(scheduler).run(skip_first_run=True))
    try:
        yield
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await scheduler.shutdown()
