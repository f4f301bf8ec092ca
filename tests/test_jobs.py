"""Tasks are enqueued by name and run: in-process (embedded) and by a real `audioverse worker` (Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from taskiq import InMemoryBroker
from taskiq.exceptions import TaskiqError

from audioverse.config import Settings
from audioverse.jobs import TaskQueue, build_broker
from tasks import register_tasks
from tasks.scheduler import scheduler

WORKER_TIMEOUT_SECONDS = 30


def settings_environment(settings: Settings) -> dict[str, str]:
    environment = {
        "AUDIOVERSE_DATA_DIR": str(settings.data_dir),
        "AUDIOVERSE_DATABASE_URL": settings.resolved_database_url,
        "AUDIOVERSE_TASK_QUEUE_NAME": settings.task_queue_name,
        "AUDIOVERSE_REDIS_NAMESPACE": settings.redis_namespace,
    }
    if settings.redis_url:
        environment["AUDIOVERSE_REDIS_URL"] = settings.redis_url
    return environment


@pytest.fixture
def worker(settings: Settings, profile: str) -> Iterator[subprocess.Popen[bytes] | None]:
    """A real worker process consuming the Redis queue (production profile only)."""
    if profile == "embedded":
        yield None
        return
    command = [str(Path(sys.executable).parent / "audioverse"), "worker", "--workers", "1"]
    process = subprocess.Popen(command, env={**os.environ, **settings_environment(settings)})
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=WORKER_TIMEOUT_SECONDS)


async def test_a_task_enqueued_by_name_runs_and_returns(
    settings: Settings, worker: subprocess.Popen[bytes] | None
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
