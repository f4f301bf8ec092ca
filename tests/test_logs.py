"""Logs: one line per request with its request id, the id carried into jobs, JSON or console as configured."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select
from taskiq import ScheduledTask
from taskiq_redis import ListRedisScheduleSource

from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from audioverse.jobs import Job, TaskQueue, build_broker, build_scheduler, defer
from audioverse.logs import _console_renderer
from tests.services import (
    REDIS_RETRIES_URL,
    REDIS_URL,
    TEST_HASHING,
    WORKER_START_TIMEOUT_SECONDS,
    Identity,
    settings_environment,
    stop_process,
    until,
)
from tests.serving import audioverse_run

GENERATED_ID = re.compile(r"[0-9a-f]{32}")
LOG_WAIT_SECONDS = 15


def _json_lines(log: str) -> list[dict[str, Any]]:
    # Python warnings print plain text beside the log lines; every log line is a JSON object.
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def _wait_for(condition: Any, describe: Any) -> None:
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, describe()
        time.sleep(0.1)


def test_each_request_is_one_json_line_with_its_id_and_no_secret(tmp_path: Path) -> None:
    identity = Identity.new()
    with audioverse_run(tmp_path, log_json="true", password_hash_profile=TEST_HASHING) as server:
        health = httpx.get(
            f"{server.url}/api/health?token=query-secret",
            headers={
                "X-Request-ID": "req-health-1",
                "Authorization": "Bearer auth-secret",
                "Cookie": "s=cookie-secret",
            },
        )
        missing = httpx.get(f"{server.url}/api/no-such-route")
        registered = httpx.post(
            f"{server.url}/api/auth/register/",
            json={"email": identity.email, "username": identity.username, "password": identity.password},
            headers={"X-Request-ID": "req-register-1"},
        )
        # The registration's email is a job, run in-process once the request's transaction commits.
        _wait_for(
            lambda: sum(line.get("request_id") == "req-register-1" for line in _json_lines(server.log())) >= 2,
            server.log,
        )
        log = server.log()

    assert (health.status_code, missing.status_code, registered.status_code) == (200, 404, 201)
    lines = _json_lines(log)
    requests = [line for line in lines if line["event"] == "request"]
    health_lines = [line for line in requests if line["request_id"] == "req-health-1"]
    assert len(health_lines) == 1, log
    assert health_lines[0]["method"] == "GET"
    assert health_lines[0]["path"] == "/api/health"
    assert health_lines[0]["status"] == 200
    assert isinstance(health_lines[0]["duration_ms"], float)
    # A path no route matches is logged too, under the id the response names.
    missing_lines = [line for line in requests if line["path"] == "/api/no-such-route"]
    assert [(line["status"], line["request_id"]) for line in missing_lines] == [
        (404, missing.headers["x-request-id"])
    ], log
    register_lines = [line for line in requests if line["request_id"] == "req-register-1"]
    assert [(line["method"], line["status"]) for line in register_lines] == [("POST", 201)], log
    assert any(line.get("request_id") == "req-register-1" and "jobs.run" in line["event"] for line in lines), log
    assert "HTTP/1.1" not in log  # uvicorn's access line would be the same request a second time
    for secret in ("query-secret", "auth-secret", "c-secret", identity.password):
        assert secret not in log


def test_log_json_false_writes_console_lines_into_a_pipe(tmp_path: Path) -> None:
    with audioverse_run(tmp_path, log_json="false") as server:
        httpx.get(f"{server.url}/api/health", headers={"X-Request-ID": "req-console-1"})
        _wait_for(lambda: "request_id=req-console-1" in server.log(), server.log)
        log = server.log()

    (line,) = [line for line in log.splitlines() if "request_id=req-console-1" in line]
    assert "method=GET" in line
    assert "path=/api/health" in line
    assert "status=200" in line
    assert "\x1b[" not in line  # no colour codes in a pipe
    assert not any(line.startswith("{") for line in log.splitlines()), log


async def test_a_sane_request_id_is_echoed(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/health", headers={"X-Request-ID": "3f2a-proxy.id:7"})
    assert response.headers["x-request-id"] == "3f2a-proxy.id:7"


async def test_a_request_without_an_id_gets_a_fresh_one(client: AsyncTestClient[Litestar]) -> None:
    first = await client.get("/api/health")
    second = await client.get("/api/no-such-route")
    assert GENERATED_ID.fullmatch(first.headers["x-request-id"])
    assert GENERATED_ID.fullmatch(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("hostile", ["x" * 129, "id\x01with-control", 'forged" level="error', "line\tbreak", "ünïcode"])
async def test_a_hostile_request_id_is_replaced(client: AsyncTestClient[Litestar], hostile: str) -> None:
    response = await client.get("/api/health", headers=[(b"x-request-id", hostile.encode())])
    assert response.status_code == 200
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_a_deferred_job_keeps_the_id_of_the_request_that_asked_for_it(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    database = sqlalchemy_config(settings)  # the client's app has migrated the schema
    try:
        async with database.get_session() as session:
            # The sweep resends a job from its row, so the row, not only the first send, names the request.
            with structlog.contextvars.bound_contextvars(request_id="req-deferred-1"):
                await defer(session, "system.ping")
            stored = await session.scalar(select(Job.request_id).where(Job.task_name == "system.ping"))
            await session.rollback()
    finally:
        await database.get_engine().dispose()
    assert stored == "req-deferred-1"


def _task_settings(data_dir: Path, namespace: str, queue: str) -> Settings:
    """JSON logs and a task queue of this test's own on the test Redis, retries in their own database."""
    return Settings(
        data_dir=data_dir,
        redis_url=REDIS_URL,
        redis_retries_url=REDIS_RETRIES_URL,
        redis_namespace=namespace,
        task_queue_name=f"{namespace}:{queue}",
        log_json=True,
    )


def _start_audioverse(settings: Settings, log_path: Path, *arguments: str) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "audioverse"), *arguments],
            env={**os.environ, **settings_environment(settings)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    return _start_audioverse(settings, log_path, "worker", "--workers", "1")


async def test_the_scheduler_sends_a_due_retry_from_the_retries_database_without_a_line_per_read(
    tmp_path: Path, redis_namespace: str
) -> None:
    settings = _task_settings(tmp_path, redis_namespace, "scheduled")
    sources = build_scheduler(build_broker(settings)).sources
    (retries,) = [source for source in sources if isinstance(source, ListRedisScheduleSource)]
    await retries.add_schedule(
        ScheduledTask(task_name="system.ping", labels={}, args=[], kwargs={}, schedule_id="due", time=datetime.now(UTC))
    )
    log_path = tmp_path / "scheduler.log"
    scheduler = _start_audioverse(settings, log_path, "scheduler", "--update-interval", "1")
    queue = Redis.from_url(REDIS_URL)
    try:
        await until(lambda: queue.llen(settings.task_queue_name), LOG_WAIT_SECONDS)
        await anyio.sleep(3)  # a few more reads of the sources
    finally:
        await queue.aclose()
        stop_process(scheduler, WORKER_START_TIMEOUT_SECONDS)
    assert "Getting previous time schedules" not in log_path.read_text()


async def test_a_failing_task_in_the_worker_logs_one_json_line_with_its_request_id(
    tmp_path: Path, redis_namespace: str
) -> None:
    settings = _task_settings(tmp_path, redis_namespace, "logs")
    log_path = tmp_path / "worker.log"
    worker = _start_worker(settings, log_path)
    broker = build_broker(settings)
    await broker.startup()
    try:
        # A task sent while a request is handled carries its id, as the sends after a request's commit do.
        with structlog.contextvars.bound_contextvars(request_id="req-failing-1"):
            task = await TaskQueue(broker).enqueue("email.send", {"not": "an email"})
        outcome = await task.wait_result(timeout=WORKER_START_TIMEOUT_SECONDS)
        assert outcome.is_err
        _wait_for(lambda: "Exception found" in log_path.read_text(), log_path.read_text)
    finally:
        await broker.shutdown()
        stop_process(worker, WORKER_START_TIMEOUT_SECONDS)
    log = log_path.read_text()

    assert "Logging error" not in log
    lines = _json_lines(log)
    (failure,) = [line for line in lines if line["event"].startswith("Exception found")]
    assert failure["level"] == "error"
    assert failure["request_id"] == "req-failing-1"
    assert failure["exception"].startswith("Traceback (most recent call last):")
    assert any(line.get("request_id") == "req-failing-1" and "email.send" in line["event"] for line in lines)


def test_console_tracebacks_leave_out_each_frames_locals() -> None:
    def fail_holding(secret_token: str, ids: list[int]) -> None:
        raise ValueError("the failure itself")

    try:
        fail_holding("-".join(["a", "local", "secret"]), list(range(100_000)))  # not in the source a traceback shows
    except ValueError:
        rendered = str(_console_renderer(io.StringIO())(None, "error", {"event": "boom", "exc_info": sys.exc_info()}))
    assert "the failure itself" in rendered
    assert "a-local-secret" not in rendered  # locals stay out: they hold secrets, and ids by the 100,000
    assert len(rendered.splitlines()) < 100
