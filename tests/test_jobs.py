"""Tasks are enqueued by name and run: in-process (embedded) and by a real `audioverse worker` (Redis)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from taskiq import InMemoryBroker
from taskiq.exceptions import TaskiqError

from audioverse.config import Settings
from audioverse.jobs import TaskQueue, build_broker
from audioverse.jobs import build_scheduler as scheduler_for
from tasks import register_tasks
from tasks.scheduler import scheduler

WORKER_TIMEOUT_SECONDS = 30


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
    assert {(schedule.task_name, schedule.cron) for schedule in schedules} >= {("reviews.recompute_all", "17 * * * *")}
