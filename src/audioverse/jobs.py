"""Background work: the Taskiq broker built from settings, and enqueueing a task by its name."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqTask, InMemoryBroker, ScheduleSource, SmartRetryMiddleware
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.kicker import AsyncKicker
from taskiq.schedule_sources import LabelScheduleSource
from taskiq.scheduler.scheduler import TaskiqScheduler
from taskiq.serializers import JSONSerializer
from taskiq_redis import ListQueueBroker, ListRedisScheduleSource, RedisAsyncResultBackend

from audioverse.config import Settings

RESULT_TTL_SECONDS = 3600
RETRY_FIRST_DELAY_SECONDS = 5
RETRY_MAX_DELAY_SECONDS = 300


def build_broker(settings: Settings) -> AsyncBroker:
    """In-process broker for the embedded profile, a Redis list queue for production.

    Tasks labelled ``retry_on_error`` (e.g. SMTP or the search engine down) are retried after a
    growing delay: 5 s, 10 s, 15 s… In production the retry waits in a Redis schedule source that
    the scheduler process sends when due; the in-process broker has no delayed delivery, so there
    retries follow at once (its only remote dependency, SMTP, is not used by the embedded profile).
    """
    if settings.redis_url is None:
        return InMemoryBroker().with_middlewares(SmartRetryMiddleware())
    retries = SmartRetryMiddleware(
        default_delay=RETRY_FIRST_DELAY_SECONDS,
        use_delay_exponent=True,
        max_delay_exponent=RETRY_MAX_DELAY_SECONDS,
        use_jitter=True,
        # Where delayed retries wait until the scheduler process sends them.
        schedule_source=ListRedisScheduleSource(
            settings.redis_url, prefix=f"{settings.redis_namespace}:retries", serializer=JSONSerializer()
        ),
    )
    result_backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
        settings.redis_url, result_ex_time=RESULT_TTL_SECONDS
    )
    # Workers wait on BRPOP with no timeout; redis-py's default 5 s socket timeout would end that wait
    # with an error that kills the worker process every idle moment. Keepalive still finds dead peers.
    broker = ListQueueBroker(
        settings.redis_url, queue_name=settings.task_queue_name, socket_timeout=None, socket_keepalive=True
    )
    return broker.with_result_backend(result_backend).with_middlewares(retries)


class TaskQueue:
    """Asks for background work by task name, so domain code never imports the ``tasks`` package."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker

    async def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> AsyncTaskiqTask[Any]:
        """Send ``task_name`` with its arguments to the broker; the handle can await the result."""
        # The registered task's kicker carries its retry labels, which the worker reads from the message.
        registered = self.broker.find_task(task_name)
        kicker: AsyncKicker[Any, Any] = (
            registered.kicker() if registered is not None else AsyncKicker(task_name, self.broker, labels={})
        )
        kicker.labels.pop("schedule", None)  # the scheduler's own business, as in LabelScheduleSource
        return await kicker.kiq(*args, **kwargs)


def build_scheduler(broker: AsyncBroker) -> TaskiqScheduler:
    """Sends the tasks whose ``schedule`` label says when (cron), and the delayed retries, through ``broker``."""
    sources: list[ScheduleSource] = [LabelScheduleSource(broker)]
    sources += [
        middleware.schedule_source
        for middleware in broker.middlewares
        if isinstance(middleware, SmartRetryMiddleware) and middleware.schedule_source is not None
    ]
    return TaskiqScheduler(broker=broker, sources=sources)


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
