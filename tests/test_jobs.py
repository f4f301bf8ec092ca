"""Tasks are enqueued by name and run: in-process (embedded) and by a real `audioverse worker` (Redis)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from taskiq import InMemoryBroker, ScheduledTask, SmartRetryMiddleware, TaskiqMessage, TaskiqMiddleware
from taskiq.exceptions import TaskiqError
from taskiq_redis import ListRedisScheduleSource

from audioverse.config import Settings
from audioverse.jobs import TaskQueue, build_broker
from audioverse.jobs import build_scheduler as scheduler_for
from audioverse.task_registry import register_tasks
from tasks.scheduler import scheduler
from tests.services import REDIS_RETRIES_URL, REDIS_URL

WORKER_TIMEOUT_SECONDS = 30
IDLE_SECONDS = 7


async def test_a_task_enqueued_by_name_runs_and_returns(
    settings: Settings, background_worker: subprocess.Popen[bytes] | None
) -> None:
    broker = register_tasks(build_broker(settings), settings)
    await broker.startup()
    try:
        task = await TaskQueue(broker).enqueue("system.ping")
        outcome = await task.wait_result(timeout=WORKER_TIMEOUT_SECONDS)
    finally:
        await broker.shutdown()
    assert not outcome.is_err, outcome.error
    assert outcome.return_value == "pong"


async def test_an_unknown_task_name_is_refused_in_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    broker = register_tasks(build_broker(settings), settings)
    assert isinstance(broker, InMemoryBroker)
    await broker.startup()
    try:
        with pytest.raises(TaskiqError):
            await TaskQueue(broker).enqueue("no.such.task")
    finally:
        await broker.shutdown()


def test_scheduler_serves_the_registered_broker() -> None:
    assert scheduler.broker.find_task("system.ping") is not None


async def test_periodic_jobs_are_scheduled(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    broker = register_tasks(build_broker(settings), settings)
    source = scheduler_for(broker).sources[0]
    await source.startup()
    schedules = await source.get_schedules()
    assert {(schedule.task_name, schedule.cron) for schedule in schedules} >= {
        ("reviews.recompute_all", "17 * * * *"),
        ("jobs.sweep", "* * * * *"),  # resends deferred jobs whose send was lost
    }


async def test_an_idle_worker_keeps_listening_past_the_redis_socket_timeout(
    tmp_path: Path, redis_namespace: str
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL, task_queue_name=f"{redis_namespace}:idle")
    broker = register_tasks(build_broker(settings), settings)
    received: list[bytes] = []

    async def listen() -> None:
        async for message in broker.listen():
            received.append(message)
            return

    await broker.startup()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(listen)
            # redis-py gives up on a read after 5 s unless told otherwise; a worker waits far longer than that.
            await anyio.sleep(IDLE_SECONDS)
            task = await TaskQueue(broker).enqueue("system.ping")
    finally:
        await broker.shutdown()
    assert task.task_id.encode() in received[0]


async def test_a_task_enqueued_by_name_carries_its_retry_labels(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    broker = register_tasks(build_broker(settings), settings)
    sent: list[TaskiqMessage] = []

    class Recorder(TaskiqMiddleware):
        def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
            sent.append(message)
            return message

    broker.add_middlewares(Recorder())
    await broker.startup()
    try:
        await TaskQueue(broker).enqueue("search.drain")
    finally:
        await broker.shutdown()
    assert sent[0].labels["retry_on_error"] in {True, "True"}
    assert "schedule" not in sent[0].labels


async def test_a_delayed_retry_waits_in_the_retries_database_out_of_the_main_ones_scans(
    tmp_path: Path, redis_namespace: str
) -> None:
    settings = Settings(
        data_dir=tmp_path, redis_url=REDIS_URL, redis_retries_url=REDIS_RETRIES_URL, redis_namespace=redis_namespace
    )
    retries = next(
        middleware for middleware in build_broker(settings).middlewares if isinstance(middleware, SmartRetryMiddleware)
    )
    assert retries.schedule_source is not None
    due = datetime.now(UTC) + timedelta(minutes=5)
    await retries.schedule_source.add_schedule(
        ScheduledTask(task_name="search.drain", labels={}, args=[], kwargs={}, schedule_id="retry-1", time=due)
    )
    main, retries_database = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_RETRIES_URL)
    try:
        assert [key async for key in main.scan_iter(match=f"{redis_namespace}:retries:*")] == []
        waiting = [key async for key in retries_database.scan_iter(match=f"{redis_namespace}:retries:*")]
        assert len(waiting) == 2  # the retry and the minute's list that finds it
    finally:
        await main.aclose()
        await retries_database.aclose()


def test_production_scheduler_also_sends_the_delayed_retries(tmp_path: Path, redis_namespace: str) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL, redis_namespace=redis_namespace)
    sources = scheduler_for(register_tasks(build_broker(settings), settings)).sources
    assert any(isinstance(source, ListRedisScheduleSource) for source in sources)
