"""Scheduled jobs shown to curators: schedule, last run, duration, outcome and next run of each; run one now."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec
from cronsim import CronSim
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.stores.base import Store
from taskiq import AsyncBroker

from audioverse.accounts.auth import requires_curator
from audioverse.errors import NotFound, problem_responses
from audioverse.jobs import JOB_RUN_KEY_PREFIX, JobRun, TaskQueue


class ScheduledJob(msgspec.Struct):
    name: str
    schedule: list[str]
    """Cron expressions, in UTC, as the scheduler reads them."""
    next_run_at: datetime
    last_run_at: datetime | None = None
    last_duration_seconds: float | None = None
    last_outcome: Literal["succeeded", "failed"] | None = None
    last_error: str | None = None


class JobStarted(msgspec.Struct):
    job_id: str


JobName = Annotated[str, Parameter(description="A job's name as the list gives it.", max_length=100)]


def _schedules(broker: AsyncBroker) -> dict[str, list[str]]:
    """Every registered task with a ``schedule`` label, by name, with its cron expressions."""
    found: dict[str, list[str]] = {}
    for name, task in broker.get_all_tasks().items():
        entries: list[dict[str, Any]] = task.labels.get("schedule") or []
        if crons := [entry["cron"] for entry in entries if "cron" in entry]:
            found[name] = crons
    return found


def _next_run(crons: list[str], now: datetime) -> datetime:
    return min(next(CronSim(cron, now)) for cron in crons)


async def scheduled_jobs(broker: AsyncBroker, store: Store) -> list[ScheduledJob]:
    """Every scheduled job by name, with its last run (from ``store``) and its next: what the API and the admin show."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    jobs = []
    for name, crons in sorted(_schedules(broker).items()):
        job = ScheduledJob(name=name, schedule=crons, next_run_at=_next_run(crons, now))
        if raw := await store.get(JOB_RUN_KEY_PREFIX + name):
            run = msgspec.json.decode(raw, type=JobRun)
            job.last_run_at, job.last_duration_seconds = run.started_at, run.duration_seconds
            job.last_outcome, job.last_error = run.outcome, run.error
        jobs.append(job)
    return jobs


class JobsController(Controller):
    path = "/api/admin/jobs"
    tags = ["admin"]
    guards = [requires_curator]

    @get("/", summary="Scheduled jobs: schedule, last run and next run (curators)")
    async def list_jobs(
        self, task_queue: NamedDependency[TaskQueue], search_store: NamedDependency[Store]
    ) -> list[ScheduledJob]:
        return await scheduled_jobs(task_queue.broker, search_store)

    @post(
        "/{name:str}/run",
        summary="Run a scheduled job now (curators)",
        description="202 with the job id; its run shows in the list when it ends. 404 for a name the list lacks.",
        status_code=HTTPStatus.ACCEPTED,
        responses=problem_responses(HTTPStatus.FORBIDDEN, HTTPStatus.NOT_FOUND),
    )
    async def run_job(self, name: JobName, task_queue: NamedDependency[TaskQueue]) -> JobStarted:
        if name not in _schedules(task_queue.broker):
            raise NotFound(f"No scheduled job is named {name!r}.")
        sent = await task_queue.enqueue(name)
        return JobStarted(job_id=sent.task_id)
