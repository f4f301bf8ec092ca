"""Progress upserts per second and their latency, many listeners at once, on the production profile.

A throwaway PostgreSQL database seeded with ``audioverse seed --books N`` (demo books), Redis for the
broker, stores and rate limits (keys under a namespace of this run, deleted at the end) and a real
Meilisearch (``audioverse run`` refuses several processes with the embedded index). The service runs
as production does, ``audioverse run --web-concurrency 2``; no worker, since saving progress sends no
task. ``--listeners`` accounts are registered and logged in, each listening to one of the books.
Then ``wrk`` (Debian's package: a C client, so the cores go to the service, not to the client as
with a Python one, which held the last run to 264/s) keeps ``--concurrency`` kept-alive connections
busy for ``--seconds`` after a ``--warmup`` run, sending ``PUT /api/progress/{book}/`` for the
listeners in turn, each a few seconds further into the book from the listener's one device, stamped
by that device's clock, as players do. Writes upserts/s, p50/p95/p99 latency and the count of
answers other than 2xx to ``bench/results/progress_writes.json``.

``uv run python -m bench.progress_writes`` (about 2 minutes); ``--seconds 5 --output /tmp/p.json`` to try it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    AUDIOVERSE,
    audioverse_environment,
    fresh_postgres_database,
    production_settings,
    running_service,
)
from bench.response_cache import SEED_TIMEOUT_SECONDS, drop_keys
from tests.services import run_meilisearch

RESULTS = Path(__file__).resolve().parent / "results"
STEP_SECONDS = 5.0
"""How far a listener gets between two saves: players save every few seconds."""
# Short of the book's last 30 s, which would mark it finished on every lap.
END_MARGIN_SECONDS = 40.0
GOAL_UPSERTS_PER_SECOND = 1500
GOAL_P99_MS = 50


@dataclass
class Listener:
    headers: dict[str, str]
    book_id: int
    laps_at: float
    """Where the position starts again from 0 (short of the book's end)."""
    device: str


async def sign_up(http: httpx.AsyncClient, number: int, book: dict[str, Any], run: str) -> Listener:
    username, password = f"listener{number}x{run}", f"progress benchmark {run} {number}"
    registered = await http.post(
        "/api/auth/register/",
        json={"email": f"{username}@bench.local", "username": username, "password": password},
    )
    registered.raise_for_status()
    login = await http.post("/api/auth/login/", json={"username_or_email": username, "password": password})
    login.raise_for_status()
    return Listener(
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        book_id=book["id"],
        laps_at=max(book["duration_seconds"] - END_MARGIN_SECONDS, STEP_SECONDS * 2),
        device=f"phone-{number}",
    )


async def listeners_for(base: str, count: int, run: str) -> list[Listener]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        books = (await http.get("/api/audiobooks/", params={"limit": 100})).json()["items"]
        signing_up = asyncio.Semaphore(8)

        async def one(number: int) -> Listener:
            async with signing_up:
                return await sign_up(http, number, books[number % len(books)], run)

        return list(await asyncio.gather(*(one(number) for number in range(count))))


WRK_SCRIPT = Path(__file__).with_suffix(".lua")


def lua_listeners(listeners: list[Listener]) -> str:
    """The listeners as the Lua file ``WRK_SCRIPT`` loads: each {token, book, lap length, device}."""
    rows = ",\n".join(
        f'  {{"{listener.headers["Authorization"]}", {listener.book_id}, {listener.laps_at:.1f}, "{listener.device}"}}'
        for listener in listeners
    )
    return "return {\n" + rows + "\n}\n"


def drive(base: str, listeners: list[Listener], concurrency: int, warmup: float, seconds: float) -> dict[str, Any]:
    """``concurrency`` wrk connections saving the listeners' progress in turn: the measured run's rate, latency."""
    with tempfile.TemporaryDirectory(prefix="progress-wrk-") as scratch:
        report, roster = Path(scratch) / "report.json", Path(scratch) / "listeners.lua"
        roster.write_text(lua_listeners(listeners))
        environment = {
            **os.environ,
            "PROGRESS_LISTENERS": str(roster),
            "PROGRESS_STEP": str(STEP_SECONDS),
            "PROGRESS_REPORT": str(report),
        }
        for duration in (warmup, seconds):
            # Each run's devices start their clocks at the current whole second; a run starting within the
            # second the last one ended would stamp its first saves before that run's last (409, stale).
            time.sleep(1.1)
            subprocess.run(
                ["wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "-s", str(WRK_SCRIPT), base],
                check=True,
                capture_output=True,
                env=environment,
            )
        measured = json.loads(report.read_text())
    elapsed = measured["duration_us"] / 1e6
    errors = measured["non_2xx"] + measured["socket_errors"]
    return {
        "upserts": measured["requests"] - errors,
        "errors": errors,
        "non_2xx": measured["non_2xx"],
        "socket_errors": measured["socket_errors"],
        "upserts_per_second": round((measured["requests"] - errors) / elapsed, 1),
        "p50_ms": measured["p50_us"] / 1000,
        "p95_ms": measured["p95_us"] / 1000,
        "p99_ms": measured["p99_us"] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=100)
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "progress_writes.json")
    args = parser.parse_args()
    run = secrets.token_hex(4)
    namespace, queue = f"avbench{run}", f"avbench{run}:tasks"
    report: dict[str, Any] = {
        "benchmark": "progress_writes",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": "production: PostgreSQL + Redis + Meilisearch, "
        f"audioverse run --web-concurrency {args.web_concurrency}",
        "route": "PUT /api/progress/{audiobook_id}/",
        "books": args.books,
        "listeners": args.listeners,
        "concurrency": args.concurrency,
        "warmup_seconds": args.warmup,
        "seconds": args.seconds,
        "client": "wrk -t1 (one client thread), kept-alive connections, same machine (shares the cores)",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
    }
    with (
        tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch,
        fresh_postgres_database() as url,
        run_meilisearch(Path(scratch)) as meilisearch,
    ):
        settings = {
            **production_settings(url, namespace, meilisearch, f"progress_{run}"),
            # Signing up the listeners is set-up: cheap hashes and no limit on it (saving progress hashes nothing).
            "password_hash_profile": "cheapest",
            "auth_rate_limit": "1000000",
        }
        data_dir = Path(scratch) / "var"
        try:
            subprocess.run(
                [AUDIOVERSE, "seed", "--books", str(args.books)],
                env=audioverse_environment(data_dir, **settings),
                capture_output=True,
                timeout=SEED_TIMEOUT_SECONDS,
                check=True,
            )
            with running_service(data_dir, "--web-concurrency", str(args.web_concurrency), **settings) as (base, _):
                listeners = asyncio.run(listeners_for(base, args.listeners, run))
                measured = drive(base, listeners, args.concurrency, args.warmup, args.seconds)
        finally:
            asyncio.run(drop_keys(namespace, queue))
    report["result"] = measured
    report["goals"] = {
        f"at_least_{GOAL_UPSERTS_PER_SECOND}_per_second": measured["upserts_per_second"] >= GOAL_UPSERTS_PER_SECOND,
        f"p99_below_{GOAL_P99_MS}_ms": measured["p99_ms"] < GOAL_P99_MS,
        "no_errors": measured["errors"] == 0,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"result": measured, "goals": report["goals"]}, indent=2))


if __name__ == "__main__":
    main()
