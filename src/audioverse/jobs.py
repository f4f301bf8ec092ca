"""Background work: the job outbox written with each write, the Taskiq broker, and sending tasks by name.

Domain code asks for work with ``await defer(session, "email.send", payload)``: the request is a
``job_outbox`` row in the caller's transaction, so it exists exactly when the write commits. After
the commit, a hook the process registers (:func:`send_after_commit`) sends ``jobs.run`` with each
new row's id; a worker runs the job and deletes the row in one transaction; ``jobs.sweep`` resends
every row still due each minute, so a lost send or a killed worker delays a job and never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
import structlog
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import JSON, Index, Integer, String, Text, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column
from taskiq import (
    AsyncBroker,
    AsyncTaskiqTask,
    InMemoryBroker,
    ScheduleSource,
    SmartRetryMiddleware,
    TaskiqMessage,
    TaskiqMiddleware,
    TaskiqResult,
)
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.kicker import AsyncKicker
from taskiq.schedule_sources import LabelScheduleSource
from taskiq.scheduler.scheduler import TaskiqScheduler
from taskiq.serializers import JSONSerializer
from taskiq_redis import ListQueueBroker, ListRedisScheduleSource, RedisAsyncResultBackend

from audioverse.config import Settings
from audioverse.db import Base, read_from_primary, session_factory
from audioverse.logs import RequestIdTaskMiddleware, current_request_id

RUN_JOB_TASK = "jobs.run"
SWEEP_JOBS_TASK = "jobs.sweep"
RESULT_TTL_SECONDS = 3600
RETRY_FIRST_DELAY_SECONDS = 5
RETRY_MAX_DELAY_SECONDS = 300


JOB_RUN_KEY_PREFIX = "job-run:"
"""Key of a scheduled task's last run in the shared store (``job-run:<task name>``)."""


class JobRun(msgspec.Struct):
    """The last run of a scheduled task, as :class:`JobRunRecorder` wrote it."""

    started_at: datetime
    duration_seconds: float
    outcome: Literal["succeeded", "failed"]
    error: str | None = None


class JobRunRecorder(TaskiqMiddleware):
    """Writes each run of a scheduled task (a ``schedule`` label) to the shared store the API reads.

    The store is the worker's own (``state.resources.search_store``, opened at worker start); a run
    that cannot be written is only logged, never failed for it.
    """

    async def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        task = self.broker.find_task(message.task_name)
        resources = getattr(self.broker.state, "resources", None)
        if task is None or "schedule" not in task.labels or resources is None:
            return
        run = JobRun(
            started_at=datetime.now(UTC) - timedelta(seconds=result.execution_time),
            duration_seconds=round(result.execution_time, 3),
            outcome="failed" if result.is_err else "succeeded",
            error=repr(result.error)[:500] if result.is_err else None,
        )
        try:
            await resources.search_store.set(JOB_RUN_KEY_PREFIX + message.task_name, msgspec.json.encode(run))
        except Exception as exc:  # the store down; the run itself went as it went
            structlog.get_logger(__name__).warning("job run not recorded", task=message.task_name, error=repr(exc))


class AbandonedTasks(TaskiqMiddleware):
    """Ends a worker process at its shutdown, logging which tasks it abandons, when some outlived the grace.

    A worker told to stop waits ``--wait-tasks-timeout`` seconds for its running tasks, then shuts its
    broker down while any task still running goes on. The process would then wait for whatever thread
    such a task is blocked in (an SMTP conversation, say), and a side effect it completed there could
    never be recorded. Ending the process at once closes the task's connections: its job's row lock
    goes with them, the row stays due, and the sweep sends it to another worker, as after a kill, but
    at the grace's end and with the jobs named in the log.
    """

    def __init__(self) -> None:
        super().__init__()
        self.running: dict[str, TaskiqMessage] = {}

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        self.running[message.task_id] = message
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        self.running.pop(message.task_id, None)

    def shutdown(self) -> None:
        if not self.running or not self.broker.is_worker_process:
            return
        structlog.get_logger(__name__).warning(
            "tasks abandoned at shutdown: still running after the grace; their jobs stay due for the sweep",
            tasks=[{"task": message.task_name, "args": message.args} for message in self.running.values()],
        )
        os._exit(1)


def build_broker(settings: Settings) -> AsyncBroker:
    """In-process broker for the embedded profile, a Redis list queue for production.

    Tasks labelled ``retry_on_error`` (e.g. SMTP or the search engine down) are retried after a
    growing delay: 5 s, 10 s, 15 s… In production the retry waits in a Redis schedule source that
    the scheduler process sends when due; the in-process broker has no delayed delivery, so there
    retries follow at once (its only remote dependency, SMTP, is not used by the embedded profile).
    """
    if settings.redis_url is None:
        return InMemoryBroker().with_middlewares(RequestIdTaskMiddleware(), SmartRetryMiddleware(), JobRunRecorder())
    retries = SmartRetryMiddleware(
        default_delay=RETRY_FIRST_DELAY_SECONDS,
        use_delay_exponent=True,
        max_delay_exponent=RETRY_MAX_DELAY_SECONDS,
        use_jitter=True,
        # Where delayed retries wait until the scheduler process sends them.
        schedule_source=ListRedisScheduleSource(
            settings.redis_retries_url or settings.redis_url,
            prefix=f"{settings.redis_namespace}:retries",
            serializer=JSONSerializer(),
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
    return broker.with_result_backend(result_backend).with_middlewares(
        RequestIdTaskMiddleware(), retries, JobRunRecorder(), AbandonedTasks()
    )


class TaskQueue:
    """Asks for background work by task name, so a caller never imports the task (nor the worker that runs it)."""

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
    """Periodic jobs for an in-process broker, which no separate scheduler process can reach.

    The caller starts and shuts down ``broker`` (the scheduler's own start and stop would do it again).
    """
    if not isinstance(broker, InMemoryBroker):
        yield
        return
    scheduler = build_scheduler(broker)
    for source in scheduler.sources:
        await source.startup()
    loop = asyncio.create_task(SchedulerLoop(scheduler).run(skip_first_run=True))
    try:
        yield
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


class Job(Base):
    """One piece of work a committed write asked for; deleted by the transaction that completes it."""

    __tablename__ = "job_outbox"
    __table_args__ = (Index("ix_job_outbox_due", "failed_at", "run_after"),)

    task_name: Mapped[str] = mapped_column(String(100))
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    """From when on the sweep sends the job (again): its creation, or after a failure its backoff."""
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    failed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    """Set when the job was given up after its last attempt; the sweep skips it, the row stays to be looked at."""
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    """The request that asked for the job: every send of it carries the id into the worker's log lines."""


def retry_delay(attempts: int) -> timedelta:
    """How long a job that failed ``attempts`` times waits before the sweep sends it again."""
    return timedelta(seconds=min(RETRY_FIRST_DELAY_SECONDS * 2 ** (attempts - 1), RETRY_MAX_DELAY_SECONDS))


_PENDING_KEY = "audioverse.deferred_jobs"


@dataclass
class _Deferred:
    """The jobs one root transaction asked for: their ids, and what they ask (to keep one of identical requests)."""

    transaction: SessionTransaction | None
    ids: list[int] = field(default_factory=list)
    # A request counts as made only within the savepoint it was made in: a rolled-back savepoint takes
    # its row with it, and the same request made again outside must write a row of its own.
    requests: set[tuple[bytes, SessionTransaction | None]] = field(default_factory=set)


def _deferred(session: Session) -> _Deferred:
    current = session.get_transaction()
    deferred: _Deferred | None = session.info.get(_PENDING_KEY)
    # State left by a transaction that rolled back belongs to no one: start afresh.
    if deferred is None or deferred.transaction is not current:
        deferred = session.info[_PENDING_KEY] = _Deferred(current)
    return deferred


def defer_sync(session: Session, task_name: str, *args: Any, **kwargs: Any) -> None:
    """:func:`defer` for synchronous code, such as a flush event listener."""
    row = {
        "task_name": task_name,
        "args": msgspec.to_builtins(list(args)),
        "kwargs": msgspec.to_builtins(kwargs),
        "run_after": datetime.now(UTC),
        "request_id": current_request_id(),
    }
    read_from_primary(session)  # the job row is a write: never a replica's connection
    connection = session.connection()  # begins the transaction, so the state below is keyed by it
    deferred = _deferred(session)
    request = (msgspec.json.encode([task_name, args, kwargs], order="sorted"), session.get_nested_transaction())
    if request in deferred.requests:
        return  # the same work asked twice in one transaction is one job
    deferred.requests.add(request)
    deferred.ids.append(connection.execute(insert(Job).values(row).returning(Job.id)).scalar_one())


async def defer(session: AsyncSession, task_name: str, *args: Any, **kwargs: Any) -> None:
    """Ask for ``task_name(*args, **kwargs)`` to run once ``session``'s transaction commits.

    The arguments are stored as JSON (msgspec builtins). Nothing runs if the transaction rolls back;
    identical requests within one transaction run once.
    """
    await session.run_sync(defer_sync, task_name, *args, **kwargs)


def send_after_commit(
    database: SQLAlchemyAsyncConfig, task_queue: TaskQueue, loop: asyncio.AbstractEventLoop | None = None
) -> Callable[[], None]:
    """Send ``jobs.run`` for the jobs each commit of ``database``'s sessions deferred; returns the unregister call.

    The sends run on ``loop``, the event loop whose broker connections ``task_queue`` uses (by default
    the running one: register it at app or worker start). A send that fails is only logged: the row
    stays, and the sweep sends it.
    """
    loop = loop or asyncio.get_running_loop()
    sending: set[asyncio.Task[None]] = set()
    logger = structlog.get_logger(__name__)

    async def send(job_ids: list[int]) -> None:
        for job_id in job_ids:
            try:
                await task_queue.enqueue(RUN_JOB_TASK, job_id)
            except Exception as exc:  # the broker may be down; the sweep resends the row
                logger.warning("job not sent; the sweep will send it", job_id=job_id, error=repr(exc))

    def after_commit(session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint was released; the transaction is still open
        deferred: _Deferred | None = session.info.pop(_PENDING_KEY, None)
        if deferred is None or deferred.transaction is not session.get_transaction() or not deferred.ids:
            return
        # The commit runs inside a session call: the sends go on in a task of their own.
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task = loop.create_task(send(deferred.ids))
            sending.add(task)
            task.add_done_callback(sending.discard)
        else:
            asyncio.run_coroutine_threadsafe(send(deferred.ids), loop)

    target = session_factory(database)
    event.listen(target, "after_commit", after_commit)
    return lambda: event.remove(target, "after_commit", after_commit)
