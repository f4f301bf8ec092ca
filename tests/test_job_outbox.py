"""Side effects are jobs written in the write's transaction: sent after its commit, never without it, never lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from taskiq import AsyncBroker, InMemoryBroker, TaskiqMessage, TaskiqMiddleware

from audioverse.accounts.models import User
from audioverse.app import create_app
from audioverse.catalog.models import Audiobook
from audioverse.config import Settings
from audioverse.db import migrate_to_head, session_factory, sqlalchemy_config
from audioverse.jobs import RUN_JOB_TASK, Job, TaskQueue, build_broker, defer, send_after_commit
from audioverse.reviews.models import Review
from audioverse.storage import ObjectNotFound, build_storage
from audioverse.task_registry import register_tasks
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import MakeBook, Tokens
from tests.services import (
    REDIS_URL,
    Identity,
    Mailbox,
    MeilisearchServer,
    free_port,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_smtp,
    settings_environment,
    until,
    worker_answers,
)

Client = AsyncTestClient[Litestar]
# Long enough for an in-process job or a running worker to have sent an email that was wrongly asked for.
QUIET_SECONDS = 1.5
DATABASE_DOWN = OperationalError("COMMIT", None, ConnectionError("the database went away"))
CLASH = IntegrityError("COMMIT", None, Exception("duplicate key value violates unique constraint"))


class SentTasks(TaskiqMiddleware):
    """Every message the app's broker sends."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[TaskiqMessage] = []

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        self.messages.append(message)
        return message

    def job_runs(self) -> list[TaskiqMessage]:
        return [message for message in self.messages if message.task_name == RUN_JOB_TASK]


@contextmanager
def recording(broker: AsyncBroker) -> Iterator[SentTasks]:
    recorder = SentTasks()
    broker.add_middlewares(recorder)
    try:
        yield recorder
    finally:
        broker.middlewares.remove(recorder)


@contextmanager
def commits_fail(app: Litestar, error: Exception) -> Iterator[None]:
    """Every commit of the app's request sessions raises ``error``, as a database refusing it would."""

    def refuse(session: Session) -> None:
        raise error

    factory = session_factory(app.state.database)
    event.listen(factory, "before_commit", refuse)
    try:
        yield
    finally:
        event.remove(factory, "before_commit", refuse)


async def settle(client: Client) -> None:
    """Let jobs that earlier tests started in-process finish, so only this test's sends are recorded."""
    broker = client.app.state.broker
    if isinstance(broker, InMemoryBroker):
        client.blocking_portal.call(broker.wait_all)


async def scalar(settings: Settings, statement: Select[Any]) -> Any:
    database = sqlalchemy_config(settings)
    try:
        async with database.get_session() as session:
            return await session.scalar(statement)
    finally:
        await database.get_engine().dispose()


async def jobs_named(settings: Settings, task_name: str) -> list[Job]:
    database = sqlalchemy_config(settings)
    try:
        async with database.get_session() as session:
            return list(await session.scalars(select(Job).where(Job.task_name == task_name)))
    finally:
        await database.get_engine().dispose()


def emails_to(jobs: list[Job], address: str) -> list[Job]:
    return [job for job in jobs if job.args and job.args[0].get("to") == address]


@pytest.mark.parametrize(
    ("error", "status"), [(DATABASE_DOWN, 503), (IntegrityError("COMMIT", None, Exception("clash")), 409)]
)
async def test_a_registration_whose_commit_fails_is_an_error_and_sends_no_email(
    client: Client, settings: Settings, mailbox: Mailbox, identity: Identity, error: Exception, status: int
) -> None:
    await settle(client)
    body = {"email": identity.email, "username": identity.username, "password": identity.password}
    with recording(client.app.state.broker) as sent, commits_fail(client.app, error):
        response = await client.post("/api/auth/register/", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await scalar(settings, select(func.count()).where(User.username == identity.username)) == 0
    assert emails_to(await jobs_named(settings, "email.send"), identity.email) == []
    assert sent.job_runs() == []
    await anyio.sleep(QUIET_SECONDS)
    assert mailbox.to(identity.email) == []

    # The same registration, committed, is sent its email.
    assert (await client.post("/api/auth/register/", json=body)).status_code == 201
    await mailbox.wait_for(identity.email, "Confirm your email")


async def test_a_book_delete_whose_commit_fails_keeps_the_book_and_its_audio(
    client: Client, settings: Settings, make_book: MakeBook, curator: Tokens
) -> None:
    book_id = await make_book(title="Kept", audio=b"ID3 not really audio")
    audio_key = await scalar(settings, select(Audiobook.audio_key).where(Audiobook.id == book_id))
    storage = build_storage(settings)
    await settle(client)
    with recording(client.app.state.broker) as sent, commits_fail(client.app, DATABASE_DOWN):
        response = await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(curator))
    assert response.status_code == 503, response.text
    assert sent.job_runs() == []
    assert [job for job in await jobs_named(settings, "storage.delete") if audio_key in job.args[0]] == []
    await anyio.sleep(QUIET_SECONDS)
    assert (await client.get(f"/api/audiobooks/{book_id}/")).status_code == 200
    assert (await storage.stat(audio_key)).size > 0

    # Committed, the delete takes the audio with it.
    assert (await client.delete(f"/api/audiobooks/{book_id}/", headers=bearer(curator))).status_code == 204

    async def audio_gone() -> bool:
        try:
            await storage.stat(audio_key)
        except ObjectNotFound:
            return True
        return False

    await until(audio_gone, 15)


async def test_a_review_whose_commit_fails_is_an_error_and_recomputes_nothing(
    client: Client, settings: Settings, make_book: MakeBook, uploader: Tokens
) -> None:
    book_id = await make_book(title="Unreviewed")
    review = {"rating": 5, "review_text": "Never saved."}
    await settle(client)
    with recording(client.app.state.broker) as sent, commits_fail(client.app, DATABASE_DOWN):
        response = await client.post(f"/api/audiobooks/{book_id}/reviews/", headers=bearer(uploader), json=review)
    assert response.status_code == 503, response.text
    assert sent.job_runs() == []
    assert [job for job in await jobs_named(settings, "reviews.recompute_aggregates") if job.args == [[book_id]]] == []
    assert await scalar(settings, select(func.count()).where(Review.audiobook_id == book_id)) == 0

    # Committed, the review is counted in the book's rating.
    created = await client.post(f"/api/audiobooks/{book_id}/reviews/", headers=bearer(uploader), json=review)
    assert created.status_code == 201, created.text

    async def rated() -> bool:
        return (await client.get(f"/api/audiobooks/{book_id}/")).json()["total_ratings"] == 1

    await until(rated, 15)


@pytest.mark.search
async def test_a_reindex_whose_claim_fails_to_commit_is_an_error_and_another_may_start_at_once(
    client: Client, curator: Tokens
) -> None:
    await settle(client)
    with recording(client.app.state.broker) as sent, commits_fail(client.app, DATABASE_DOWN):
        refused = await client.post("/api/admin/search/reindex/", headers=bearer(curator))
    assert refused.status_code == 503, refused.text
    assert sent.job_runs() == []
    status = (await client.get("/api/admin/search/status/", headers=bearer(curator))).json()["reindex"]
    assert status["state"] == "failed"  # not "running" for the ten minutes of a lease nobody renews
    assert "could not be started" in status["error"]

    started = await client.post("/api/admin/search/reindex/", headers=bearer(curator))
    assert started.status_code == 202, started.text

    async def succeeded() -> bool:
        reindex = (await client.get("/api/admin/search/status/", headers=bearer(curator))).json()["reindex"]
        return bool(reindex["state"] == "succeeded")

    await until(succeeded, 60, interval=0.2)


class RecordingQueue(TaskQueue):
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Any:
        assert task_name == RUN_JOB_TASK
        self.sent.extend(args)


async def test_jobs_are_sent_after_the_commit_once_each_and_never_after_a_rollback(tmp_path: Path) -> None:
    database = sqlalchemy_config(Settings(data_dir=tmp_path))
    await migrate_to_head(database)
    queue = RecordingQueue()
    stop_sending = send_after_commit(database, queue)
    try:
        async with database.get_session() as session:
            await defer(session, "email.send", {"to": "rolled@back.example"})
            await session.rollback()
            await defer(session, "email.send", {"to": "kept@example.com"})
            await defer(session, "email.send", {"to": "kept@example.com"})  # the same request: one job
            async with session.begin_nested():
                await defer(session, "storage.delete", ["covers/old.png"])
            undone = await session.begin_nested()
            await defer(session, "storage.delete", ["covers/new.png"])
            await undone.rollback()
            await defer(session, "storage.delete", ["covers/new.png"])  # asked again: not the undone request
            await anyio.sleep(0.1)
            assert queue.sent == []  # a released savepoint is not a commit
            await session.commit()

        async def all_sent() -> bool:
            return len(queue.sent) == 4  # the undone request's id too: its run finds no row and skips

        await until(all_sent, 5)
        async with database.get_session() as session:
            rows = list(await session.scalars(select(Job).order_by(Job.id)))
        assert {row.id for row in rows} <= set(queue.sent)
        assert [(row.task_name, row.args) for row in rows] == [
            ("email.send", [{"to": "kept@example.com"}]),
            ("storage.delete", [["covers/old.png"]]),
            ("storage.delete", [["covers/new.png"]]),
        ]
    finally:
        stop_sending()
        await database.get_engine().dispose()


# --- production: a real worker process that dies, and a broker that is down ---------------------------------


@dataclass
class Stack:
    settings: Settings
    client: Client
    mailbox: Mailbox


@pytest.fixture(scope="module")
async def stack(meilisearch: MeilisearchServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The production profile with an SMTP server of its own, so every message in it is this module's."""
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        with run_smtp() as smtp:
            settings = production_settings(
                tmp_path_factory.mktemp("jobs-data"),
                database_url=database_url,
                namespace=namespace,
                meilisearch=meilisearch,
                smtp=smtp,
            )
            async with AsyncTestClient(app=create_app(settings)) as client:
                yield Stack(settings, client, Mailbox(smtp=smtp))


@contextmanager
def worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``audioverse worker`` in a process group of its own, so it and its children can be killed at once."""
    command = [str(Path(sys.executable).parent / "audioverse"), "worker", "--workers", "1"]
    process = subprocess.Popen(command, env={**os.environ, **settings_environment(settings)}, start_new_session=True)
    try:
        yield process
    finally:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def send(settings: Settings, task_name: str, *args: Any) -> None:
    """Send a task as another process would (the scheduler sending the sweep, say)."""
    broker = register_tasks(build_broker(settings), settings)
    await broker.startup()
    try:
        await TaskQueue(broker).enqueue(task_name, *args)
    finally:
        await broker.shutdown()


async def register(stack: Stack, identity: Identity) -> None:
    body = {"email": identity.email, "username": identity.username, "password": identity.password}
    response = await stack.client.post("/api/auth/register/", json=body)
    assert response.status_code == 201, response.text


async def all_sent(stack: Stack, identity: Identity) -> None:
    """Wait until the email job is done and nothing is left in the queue, then a little longer."""

    async def done() -> bool:
        return emails_to(await jobs_named(stack.settings, "email.send"), identity.email) == []

    redis = Redis.from_url(REDIS_URL)
    try:

        async def queue_empty() -> bool:
            return await redis.llen(stack.settings.task_queue_name) == 0  # type: ignore[misc]

        await until(done, 30, interval=0.2)
        await until(queue_empty, 30, interval=0.2)
    finally:
        await redis.aclose()
    await anyio.sleep(QUIET_SECONDS)


async def test_an_email_whose_worker_was_killed_is_delivered_once_after_a_restart(stack: Stack) -> None:
    identity = Identity.new()
    with worker(stack.settings) as first:
        await worker_answers(stack.settings)
        kill(first)  # SIGKILL, worker and children: nothing consumes the queue from here on
    await register(stack, identity)
    [job] = emails_to(await jobs_named(stack.settings, "email.send"), identity.email)
    # The sweep's resend while the worker is down: two messages in the queue now ask for the one job.
    await send(stack.settings, RUN_JOB_TASK, job.id)
    await anyio.sleep(QUIET_SECONDS)
    assert stack.mailbox.to(identity.email) == []

    with worker(stack.settings):
        await worker_answers(stack.settings)  # a start can take a while on a busy machine
        await stack.mailbox.wait_for(identity.email, "Confirm your email")
        await all_sent(stack, identity)
    assert len(stack.mailbox.to(identity.email)) == 1


@contextmanager
def silent_smtp_port() -> Iterator[int]:
    """A port that takes connections and never answers: a mail server that hangs mid-delivery."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def claimed(settings: Settings, job_id: int) -> bool:
    """Whether a worker holds job ``job_id`` (its row exists and is locked)."""
    database = sqlalchemy_config(settings)
    try:
        async with database.get_session() as session:
            exists = await session.scalar(select(Job.id).where(Job.id == job_id))
            free = await session.scalar(select(Job.id).where(Job.id == job_id).with_for_update(skip_locked=True))
            return exists is not None and free is None
    finally:
        await database.get_engine().dispose()


async def test_an_email_whose_worker_was_killed_mid_delivery_is_delivered_once_by_the_next(stack: Stack) -> None:
    identity = Identity.new()
    with silent_smtp_port() as hanging:
        hung_settings = msgspec.structs.replace(stack.settings, smtp_port=hanging)
        with worker(hung_settings) as first:
            await worker_answers(stack.settings)
            await register(stack, identity)
            [job] = emails_to(await jobs_named(stack.settings, "email.send"), identity.email)
            await until(lambda: claimed(stack.settings, job.id), 30, interval=0.1)
            kill(first)  # SIGKILL while it waits on the mail server, the job's message already taken off the queue

    async def released() -> bool:
        return not await claimed(stack.settings, job.id)

    await until(released, 10, interval=0.1)  # the dead worker's lock goes with its connection
    assert stack.mailbox.to(identity.email) == []

    with worker(stack.settings):
        await worker_answers(stack.settings)
        await send(stack.settings, "jobs.sweep")  # as the scheduler does every minute
        await stack.mailbox.wait_for(identity.email, "Confirm your email")
        await all_sent(stack, identity)
    assert len(stack.mailbox.to(identity.email)) == 1


async def test_an_email_asked_for_while_the_broker_is_down_is_delivered_by_the_sweep(stack: Stack) -> None:
    identity = Identity.new()
    broker = stack.client.app.state.broker
    with worker(stack.settings):
        await worker_answers(stack.settings)
        reachable = broker.connection_pool
        broker.connection_pool = BlockingConnectionPool.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
        try:
            await register(stack, identity)  # the write succeeds; only the send after it fails
            await anyio.sleep(QUIET_SECONDS)
        finally:
            broker.connection_pool = reachable
        assert len(emails_to(await jobs_named(stack.settings, "email.send"), identity.email)) == 1
        assert stack.mailbox.to(identity.email) == []

        await send(stack.settings, "jobs.sweep")  # as the scheduler does every minute
        await stack.mailbox.wait_for(identity.email, "Confirm your email")
        await all_sent(stack, identity)
    assert len(stack.mailbox.to(identity.email)) == 1
