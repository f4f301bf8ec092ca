"""Scheduled jobs for curators: the list with schedules and runs, running one now, and the housekeeping jobs."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import msgspec
import pytest
from litestar import Litestar
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from taskiq import InMemoryBroker

from audioverse.accounts.models import EmailToken, EmailTokenPurpose, RefreshToken
from audioverse.config import Settings
from audioverse.jobs import JOB_RUN_KEY_PREFIX, JobRun, JobRunRecorder
from audioverse.listening.models import PlayWindow
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.services import database_for

Client = AsyncTestClient[Litestar]
JOBS = "/api/admin/jobs/"
RUN_WAIT_SECONDS = 30


async def jobs_by_name(client: Client, curator: Tokens) -> dict[str, dict[str, Any]]:
    response = await client.get(JOBS, headers=bearer(curator))
    assert response.status_code == 200, response.text
    return {job["name"]: job for job in response.json()}


async def run_and_wait(client: Client, curator: Tokens, name: str) -> dict[str, Any]:
    """Run ``name`` now and return its list entry once the run has been recorded."""
    started = await client.post(f"{JOBS}{name}/run/", headers=bearer(curator))
    assert started.status_code == 202, started.text
    assert started.json()["job_id"]
    with anyio.fail_after(RUN_WAIT_SECONDS):
        while (job := (await jobs_by_name(client, curator))[name])["last_run_at"] is None:  # noqa: ASYNC110 - polling another process
            await anyio.sleep(0.1)
    return job


async def test_curators_see_every_scheduled_job_with_its_next_run(
    client: Client, curator: Tokens, uploader: Tokens
) -> None:
    jobs = await jobs_by_name(client, curator)
    assert {
        "jobs.sweep",
        "search.drain",
        "reviews.recompute_all",
        "recommendations.nightly",
        "accounts.delete_expired_tokens",
        "listening.delete_past_play_windows",
    } <= set(jobs)
    assert "jobs.run" not in jobs  # sent per deferred job, never on a schedule
    now = datetime.now(UTC)
    hourly = jobs["reviews.recompute_all"]
    assert hourly["schedule"] == ["17 * * * *"]
    next_run = datetime.fromisoformat(hourly["next_run_at"])
    assert next_run.minute == 17
    assert now - timedelta(minutes=1) < next_run <= now + timedelta(hours=1)
    assert hourly["last_outcome"] is None

    assert (await client.get(JOBS)).status_code == 401
    assert (await client.get(JOBS, headers=bearer(uploader))).status_code == 403
    assert (await client.post(f"{JOBS}search.drain/run/", headers=bearer(uploader))).status_code == 403
    for unknown in ("no.such.job", "jobs.run"):
        assert (await client.post(f"{JOBS}{unknown}/run/", headers=bearer(curator))).status_code == 404


async def test_running_the_token_cleanup_now_deletes_expired_tokens_and_shows_the_run(
    client: Client, settings: Settings, curator: Tokens
) -> None:
    now = datetime.now(UTC)
    async with database_for(settings) as database, database.get_session() as session:
        for expires_at in (now - timedelta(days=1), now + timedelta(days=1)):
            session.add(
                RefreshToken(
                    user_id=curator["user_id"],
                    family_id=secrets.token_hex(8),
                    token_hash=secrets.token_hex(32),
                    expires_at=expires_at,
                )
            )
            session.add(
                EmailToken(
                    user_id=curator["user_id"],
                    purpose=EmailTokenPurpose.VERIFY_EMAIL,
                    email="someone@example.com",
                    token_hash=secrets.token_hex(32),
                    expires_at=expires_at,
                )
            )
        await session.commit()

    job = await run_and_wait(client, curator, "accounts.delete_expired_tokens")
    assert job["last_outcome"] == "succeeded"
    assert job["last_duration_seconds"] >= 0
    assert datetime.fromisoformat(job["last_run_at"]) <= datetime.now(UTC)
    async with database_for(settings) as database, database.get_session() as session:
        for model in (RefreshToken, EmailToken):
            expired = select(func.count()).select_from(model).where(model.expires_at < datetime.now(UTC))
            assert await session.scalar(expired) == 0
            # The curator's own login token and the future test rows stay.
            assert await session.scalar(select(func.count()).select_from(model)) >= 1


async def test_the_play_window_cleanup_keeps_the_windows_that_still_hold_back_a_count(
    client: Client, settings: Settings, curator: Tokens, make_book: MakeBook
) -> None:
    books = [await make_book(title=f"Window {n}") for n in range(2)]
    now = datetime.now(UTC)
    async with database_for(settings) as database, database.get_session() as session:
        for book, counted_at in zip(books, (now - timedelta(hours=2), now), strict=True):
            session.add(PlayWindow(user_id=curator["user_id"], audiobook_id=book, counted_at=counted_at))
        await session.commit()
    job = await run_and_wait(client, curator, "listening.delete_past_play_windows")
    assert job["last_outcome"] == "succeeded"
    async with database_for(settings) as database, database.get_session() as session:
        assert list(await session.scalars(select(PlayWindow.audiobook_id))) == [books[1]]


@pytest.mark.parametrize("fails", [False, True])
async def test_a_scheduled_tasks_run_is_recorded_with_its_outcome(fails: bool) -> None:
    broker = InMemoryBroker().with_middlewares(JobRunRecorder())
    store = MemoryStore()
    broker.state.resources = type("Resources", (), {"search_store": store})()

    @broker.task(task_name="demo.scheduled", schedule=[{"cron": "* * * * *"}])
    async def scheduled() -> str:
        if fails:
            raise RuntimeError("the job broke")
        return "done"

    @broker.task(task_name="demo.unscheduled")
    async def unscheduled() -> str:
        return "done"

    await broker.startup()
    try:
        for task in (scheduled, unscheduled):
            await (await task.kiq()).wait_result(timeout=5)
    finally:
        await broker.shutdown()
    raw = await store.get(JOB_RUN_KEY_PREFIX + "demo.scheduled")
    assert raw is not None
    run = msgspec.json.decode(raw, type=JobRun)
    assert run.outcome == ("failed" if fails else "succeeded")
    assert (run.error is not None and "the job broke" in run.error) is fails
    assert await store.get(JOB_RUN_KEY_PREFIX + "demo.unscheduled") is None
