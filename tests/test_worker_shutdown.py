"""A stop signal to ``audioverse worker``: a running task finishes within the grace, or its job runs again elsewhere."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from audioverse.cli import WORKER_GRACE_SECONDS, child_processes, worker_arguments
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from audioverse.jobs import RUN_JOB_TASK, SWEEP_JOBS_TASK, Job, defer
from audioverse.mail import EMAIL_TASK, OutgoingEmail
from tests.services import (
    SmtpServer,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_smtp,
    settings_environment,
    until,
    worker_answers,
)
from tests.test_cli import running
from tests.test_job_outbox import claimed, send, silent_smtp_port

DELIVERY_SECONDS = 3.0
"""How long the mail server takes to accept a message: a task that fits well inside the grace."""
SHORT_GRACE_SECONDS = 2
# Taskiq's wait for the broker's shutdown (5 s) and its process manager's 1 s poll come on top of the grace.
EXIT_MARGIN_SECONDS = 10


class SlowSmtpServer(SmtpServer):
    """Takes :data:`DELIVERY_SECONDS` to accept each message; ``receiving`` is set once one has begun."""

    receiving = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving = True
        await asyncio.sleep(DELIVERY_SECONDS)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def settings(tmp_path: Path) -> AsyncIterator[Settings]:
    """The production profile on a database and Redis namespace of the test's own (no search server needed)."""
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        settings = production_settings(tmp_path, database_url=database_url, namespace=namespace, meilisearch=None)
        database = sqlalchemy_config(settings)
        try:
            await migrate_to_head(database)
        finally:
            await database.get_engine().dispose()
        yield settings


@contextmanager
def worker(settings: Settings, log: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``audioverse worker`` in a session of its own (so a failed test can kill all it started)."""
    command = [str(Path(sys.executable).parent / "audioverse"), "worker", "--workers", "1", *options]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **settings_environment(settings)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def deferred_email(settings: Settings, to: str) -> int:
    """Write an email job as a request's transaction does, send it as the commit hook does; its id."""
    email = OutgoingEmail(to=to, subject="Shutdown", text="Still here.", html="<p>Still here.</p>")
    database = sqlalchemy_config(settings)
    try:
        async with database.get_session() as session:
            await defer(session, EMAIL_TASK, msgspec.to_builtins(email))
            job_id = await session.scalar(select(func.max(Job.id)))
            await session.commit()
    finally:
        await database.get_engine().dispose()
    assert isinstance(job_id, int)
    await send(settings, RUN_JOB_TASK, job_id)
    return job_id


async def job_row(settings: Settings, job_id: int) -> Job | None:
    database = sqlalchemy_config(settings)
    try:
        async with database.get_session() as session:
            return await session.scalar(select(Job).where(Job.id == job_id))
    finally:
        await database.get_engine().dispose()


def stop_and_wait(process: subprocess.Popen[bytes], seconds: float) -> list[int]:
    """SIGTERM the worker's main process, as an orchestrator does; wait for it; its children still running."""
    children = child_processes(process.pid)
    assert children, "the worker runs its tasks in a child process"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=seconds)
    return [pid for pid in children if running(pid)]


def test_the_worker_waits_twenty_seconds_for_running_tasks_unless_told_otherwise() -> None:
    assert worker_arguments([]).wait_tasks_timeout == float(WORKER_GRACE_SECONDS) == 20
    assert worker_arguments(["--wait-tasks-timeout", "3"]).wait_tasks_timeout == 3
    assert worker_arguments(["--wait-tasks-timeout=4"]).wait_tasks_timeout == 4


async def test_a_task_running_at_sigterm_finishes_and_the_worker_exits(settings: Settings, tmp_path: Path) -> None:
    with run_smtp(SlowSmtpServer) as smtp:
        mailing = msgspec.structs.replace(settings, email_backend="smtp", smtp_host=smtp.host, smtp_port=smtp.port)
        with worker(mailing, tmp_path / "worker.log") as process:
            await worker_answers(settings)
            job_id = await deferred_email(settings, "stays@example.com")

            async def receiving() -> bool:
                return smtp.receiving

            await until(receiving, 30)
            assert smtp.messages == []  # mid-delivery when the signal comes
            left = await asyncio.to_thread(stop_and_wait, process, DELIVERY_SECONDS + EXIT_MARGIN_SECONDS)
            assert process.returncode == 0
            assert left == []
        assert [message["To"] for message in smtp.messages] == ["stays@example.com"]
        assert await job_row(settings, job_id) is None  # done, not left for the sweep to send again


async def test_a_task_outliving_the_grace_is_run_again_by_the_next_worker(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with silent_smtp_port() as hanging:
        # The task waits on a mail server that never answers, far longer than the grace.
        hung = msgspec.structs.replace(settings, email_backend="smtp", smtp_port=hanging, smtp_timeout_seconds=120)
        with worker(hung, log, "--wait-tasks-timeout", str(SHORT_GRACE_SECONDS)) as process:
            await worker_answers(settings)
            job_id = await deferred_email(settings, "later@example.com")
            await until(lambda: claimed(settings, job_id), 30, interval=0.1)
            left = await asyncio.to_thread(stop_and_wait, process, SHORT_GRACE_SECONDS + EXIT_MARGIN_SECONDS)
            assert left == []
    abandoned = [line for line in log.read_text().splitlines() if "tasks abandoned at shutdown" in line]
    assert len(abandoned) == 1
    assert RUN_JOB_TASK in abandoned[0]
    assert str(job_id) in abandoned[0]

    async def released() -> bool:
        return not await claimed(settings, job_id)

    await until(released, 10, interval=0.1)  # the abandoned task's connection, and its lock, went with the process
    row = await job_row(settings, job_id)
    assert row is not None
    assert (row.failed_at, row.attempts) == (None, 0)  # due as before, not counted a failure

    with run_smtp(SlowSmtpServer) as smtp:
        mailing = msgspec.structs.replace(settings, email_backend="smtp", smtp_host=smtp.host, smtp_port=smtp.port)
        with worker(mailing, log):
            await worker_answers(settings)
            await send(settings, SWEEP_JOBS_TASK)  # as the scheduler does every minute

            async def done() -> bool:
                return await job_row(settings, job_id) is None

            await until(done, 30, interval=0.2)
        assert [message["To"] for message in smtp.messages] == ["later@example.com"]
