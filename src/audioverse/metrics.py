"""``/metrics`` for Prometheus: request counts and latencies by route, and gauges of the background work.

Requests are counted by Litestar's Prometheus middleware, by route template (never the raw path, so
ids do not multiply the series). The gauges are read when Prometheus scrapes: the search outbox's
backlog and the age of its oldest row, the task queue's depth, the reindex state, the age of the
recommendation model, and each scheduled job's last outcome and run.

Metrics are not public: with ``AUDIOVERSE_METRICS_TOKEN`` set, a scrape must send it as a bearer
token; without it, only a client on this machine (loopback) is answered, which behind a proxy that
forwards the client's address (nginx, uvicorn's proxy headers) no outside client is.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.prometheus import PrometheusConfig
from litestar.stores.base import Store
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from audioverse.accounts.auth import PUBLIC
from audioverse.catalog.indexing import pending_changes, read_status
from audioverse.config import Settings
from audioverse.errors import Forbidden, problem_responses
from audioverse.jobs import JOB_RUN_KEY_PREFIX, JobRun, TaskQueue
from audioverse.recommendations.services import RecommendationCache

PREFIX = "audioverse"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

OUTBOX_PENDING = Gauge(f"{PREFIX}_search_outbox_pending", "Catalog changes not yet in the search index.")
OUTBOX_LAG = Gauge(f"{PREFIX}_search_outbox_lag_seconds", "How long the oldest change not yet indexed has waited.")
QUEUE_DEPTH = Gauge(f"{PREFIX}_task_queue_depth", "Task messages waiting in the broker's queue (Redis).")
REINDEX_STATE = Gauge(f"{PREFIX}_reindex_state", "1 for the reindex's current state.", ["state"])
MODEL_AGE = Gauge(f"{PREFIX}_recommendation_model_age_seconds", "Seconds since the recommendation lists were built.")
JOB_SUCCEEDED = Gauge(f"{PREFIX}_job_last_run_succeeded", "1 if a scheduled job's last run succeeded, else 0.", ["job"])
JOB_LAST_RUN = Gauge(f"{PREFIX}_job_last_run_timestamp_seconds", "When a scheduled job last ran (Unix time).", ["job"])
REINDEX_STATES = ("idle", "running", "succeeded", "failed")


def prometheus_config() -> PrometheusConfig:
    """Request metrics by route template, the scrape itself left out."""
    return PrometheusConfig(app_name=PREFIX, prefix=PREFIX, group_path=True, exclude=["/metrics"])


def may_scrape(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the metrics token as a bearer token, or without a token configured a loopback client."""
    settings: Settings = connection.app.state.settings
    if settings.metrics_token:
        scheme, _space, sent = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            sent.strip().encode(), settings.metrics_token.encode()
        ):
            raise Forbidden("Metrics need the metrics token (AUDIOVERSE_METRICS_TOKEN) as a bearer token.")
        return
    if connection.client is None or connection.client.host not in LOOPBACK:
        raise Forbidden("Metrics are answered on this machine only, unless AUDIOVERSE_METRICS_TOKEN is set.")


async def refresh_gauges(
    session: AsyncSession, store: Store, task_queue: TaskQueue, settings: Settings, redis: Redis | None
) -> None:
    """Read what the gauges show, now; ``redis`` is the app's client (the broker's queue), None without Redis."""
    pending = await pending_changes(session)
    OUTBOX_PENDING.set(pending.changes)
    OUTBOX_LAG.set(pending.lag_seconds)
    reindex = await read_status(store)
    for state in REINDEX_STATES:
        REINDEX_STATE.labels(state=state).set(1 if reindex.state == state else 0)
    version = await RecommendationCache(store).version()
    generated_at = version.generated_at if version else None
    MODEL_AGE.set((datetime.now(UTC) - generated_at).total_seconds() if generated_at else float("nan"))
    if redis is not None:
        QUEUE_DEPTH.set(await redis.llen(settings.task_queue_name))
    for name, task in task_queue.broker.get_all_tasks().items():
        if "schedule" not in task.labels:
            continue
        if raw := await store.get(JOB_RUN_KEY_PREFIX + name):
            run = msgspec.json.decode(raw, type=JobRun)
            JOB_SUCCEEDED.labels(job=name).set(1 if run.outcome == "succeeded" else 0)
            JOB_LAST_RUN.labels(job=name).set(run.started_at.timestamp())


class MetricsController(Controller):
    path = "/metrics"
    guards = [may_scrape]

    @get(
        "/",
        summary="Prometheus metrics (a scraper with the metrics token, or a client on this machine)",
        description="Prometheus text format: requests and latency histograms by route, and gauges of the "
        "search outbox, task queue, reindex, recommendation model and scheduled jobs. 403 without "
        "`AUDIOVERSE_METRICS_TOKEN` as a bearer token (or, with none set, from anywhere but loopback).",
        tags=["operations"],
        opt=PUBLIC,
        cache=False,
        media_type=CONTENT_TYPE_LATEST,
        responses=problem_responses(HTTPStatus.FORBIDDEN),
    )
    async def metrics(
        self,
        db_session: NamedDependency[AsyncSession],
        search_store: NamedDependency[Store],
        task_queue: NamedDependency[TaskQueue],
        settings: NamedDependency[Settings],
        redis: NamedDependency[Redis | None],
    ) -> Response[bytes]:
        await refresh_gauges(db_session, search_store, task_queue, settings, redis)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
