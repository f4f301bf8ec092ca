"""Liveness and readiness: ``/api/health`` and ``/api/ready`` (which dependencies answer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from http import HTTPStatus
from typing import Literal

import anyio
import msgspec
import structlog
from litestar import Controller, get
from litestar.datastructures import State
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audioverse.config import Settings
from audioverse.errors import ServiceUnavailable, problem_responses
from audioverse.mail import EmailUnavailable, check_smtp
from audioverse.storage import StorageUnavailable
from search import SearchEngineError

logger = structlog.get_logger(__name__)

Probe = Callable[[], Awaitable[object]]
# Failures whose message our adapters word for an operator (what is wrong and with which code); others show
# only their type, since their text may carry addresses.
EXPLAINED_FAILURES = (SearchEngineError, StorageUnavailable, EmailUnavailable)


class HealthStatus(msgspec.Struct):
    status: Literal["ok"]


class ReadyStatus(msgspec.Struct):
    status: Literal["ready"]
    checks: dict[str, str]


class ReadinessProbes:
    """The named dependency checks that ``/api/ready`` runs, each with a deadline."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.probes: dict[str, Probe] = {}

    def add(self, name: str, probe: Probe) -> None:
        self.probes[name] = probe

    async def run(self) -> dict[str, str]:
        """Run every probe concurrently; ``ok`` or the reason it failed, by name."""
        results: dict[str, str] = {}

        async def run_one(name: str, probe: Probe) -> None:
            try:
                with anyio.fail_after(self.timeout_seconds):
                    await probe()
            except TimeoutError:
                results[name] = f"no answer within {self.timeout_seconds:g}s"
            except EXPLAINED_FAILURES as exc:
                results[name] = str(exc)
            except Exception as exc:
                logger.warning("readiness probe failed", probe=name, error=repr(exc))
                results[name] = f"unreachable ({type(exc).__name__})"
            else:
                results[name] = "ok"

        async with anyio.create_task_group() as group:
            for name, probe in self.probes.items():
                group.start_soon(run_one, name, probe)
        return dict(sorted(results.items()))


def database_probe(engine: AsyncEngine) -> Probe:
    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return probe


def email_probe(settings: Settings, timeout_seconds: float) -> Probe:
    return partial(check_smtp, settings, timeout_seconds)


def not_ready(checks: Mapping[str, str]) -> str:
    """Each failed check as ``name: why``, joined; empty when every dependency answered."""
    return "; ".join(f"{name}: {outcome}" for name, outcome in checks.items() if outcome != "ok")


class HealthController(Controller):
    path = "/api"
    tags = ["health"]

    @get("/health", summary="Process is alive", cache=False)
    async def health(self) -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        summary="Every dependency answers",
        description="503 problem+json naming each dependency that cannot serve (database, search engine, broker, "
        "storage, email over SMTP) and why, in `detail` and `checks`; each is checked with the configured "
        "credentials.",
        responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
        cache=False,
    )
    async def ready(self, state: State) -> ReadyStatus:
        probes: ReadinessProbes = state.readiness
        checks = await probes.run()
        if problems := not_ready(checks):
            raise ServiceUnavailable(problems, extra={"checks": checks})
        return ReadyStatus(status="ready", checks=checks)
