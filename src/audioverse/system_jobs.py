"""Tasks of the task system itself: run one deferred job exactly once, resend every job still due, and ping.

A job runs under a claim on its row and its row is deleted by the transaction that ends the claim.
On PostgreSQL the claim is ``SELECT … FOR UPDATE SKIP LOCKED`` held while the job runs: a second send
of the same job (the after-commit send and the sweep's, or a retry) finds the row locked or gone and
skips it, and a worker killed mid-job loses its connection, so the lock goes and the row is sent again.
SQLite has no row locks and the embedded profile is one process: the claim there is the process's set
of running jobs, and the row is read and deleted in short transactions of their own (a transaction held
open across the job would take SQLite's single write lock from the job's own writes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import Context, TaskiqDepends

from audioverse.jobs import RUN_JOB_TASK, SWEEP_JOBS_TASK, Job, TaskQueue, retry_delay
from audioverse.task_runtime import EVERY_MINUTE, RETRY, Resources, TaskResources, TaskSpec

SWEEP_BATCH = 1000
logger = structlog.get_logger(__name__)


async def _record_failure(session: AsyncSession, job: Job, error: str, max_attempts: int) -> None:
    attempts = job.attempts + 1
    now = datetime.now(UTC)
    await session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            attempts=attempts,
            last_error=error[:2000],
            run_after=now + retry_delay(attempts),
            failed_at=now if attempts >= max_attempts else None,
            updated_at=now,
        )
    )
    await session.commit()


async def _run(job: Job, context: Context, resources: TaskResources) -> None:
    task = context.broker.find_task(job.task_name)
    if task is None:
        raise LookupError(f"no task is registered as {job.task_name!r}")
    # A job's task takes its stored arguments plus the worker's resources.
    await task.original_func(*job.args, **job.kwargs, resources=resources)


async def run_job(job_id: int, context: Annotated[Context, TaskiqDepends()], resources: Resources) -> str:
    """Run job ``job_id`` unless it is done, given up, or running elsewhere; delete its row when it succeeds.

    A failure is recorded on the row (attempts, error, when the sweep may retry) and raised, so the
    broker's retry middleware sends it again sooner; after ``job_max_attempts`` the job is given up.
    """
    async with resources.job_slots, resources.database.get_session() as session:
        row_locks = session.get_bind().dialect.name == "postgresql"
        if not row_locks and job_id in resources.running_jobs:
            return "running elsewhere"
        job = await session.scalar(
            select(Job).where(Job.id == job_id, Job.failed_at.is_(None)).with_for_update(skip_locked=True)
        )
        if job is None:
            return "skipped"
        if not row_locks:
            resources.running_jobs.add(job_id)
            await session.commit()
        try:
            try:
                await _run(job, context, resources)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("job failed", job_id=job_id, task=job.task_name, attempt=job.attempts + 1, error=error)
                await _record_failure(session, job, error, resources.settings.job_max_attempts)
                raise
            await session.execute(delete(Job).where(Job.id == job_id))
            await session.commit()
        finally:
            resources.running_jobs.discard(job_id)
    return "done"


async def sweep(context: Annotated[Context, TaskiqDepends()], resources: Resources) -> int:
    """Send again every job whose send was lost, whose worker died, or whose retry is due; returns how many."""
    async with resources.database.get_session() as session:
        due: list[Any] = list(
            await session.execute(
                select(Job.id, Job.request_id)
                .where(Job.failed_at.is_(None), Job.run_after <= datetime.now(UTC))
                .order_by(Job.id)
                .limit(SWEEP_BATCH)
            )
        )
    queue = TaskQueue(context.broker)
    for job_id, request_id in due:
        # The send carries the id of the request that asked for the job (see RequestIdTaskMiddleware).
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await queue.enqueue(RUN_JOB_TASK, job_id)
    return len(due)


async def ping(resources: Resources) -> str:
    """Answer ``pong`` after touching the database, proving the worker's resources work."""
    async with resources.database.get_session() as session:
        await session.execute(text("SELECT 1"))
    return "pong"


TASKS = [
    TaskSpec("system.ping", ping),
    # Deferred jobs (audioverse.jobs.defer): each is sent after its commit, and the sweep resends any still due.
    TaskSpec(RUN_JOB_TASK, run_job, RETRY),
    TaskSpec(SWEEP_JOBS_TASK, sweep, EVERY_MINUTE),
]
