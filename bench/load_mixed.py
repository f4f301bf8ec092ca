"""Mixed listener traffic with locust on the production profile, in steps of users: the most held at p99 < 100 ms.

A throwaway PostgreSQL database seeded with ``audioverse seed --books N`` (100,000 by default, about
4 minutes), indexed into a real Meilisearch as ``bench.search_at_scale`` does, Redis for the broker,
stores, rate limits and the response cache (keys under a namespace of this run, deleted at the end),
a worker and the scheduler, and ``audioverse run --web-concurrency 2``, as ``docker-compose.yml`` runs
production (no nginx in front: the app serves the stream ranges itself). Once the seed's background
jobs have run, as many listeners as the largest step are registered and logged in.

Then, for each ``--users`` step, a headless locust run of ``bench/locust_mixed.py`` (one process,
FastHttpUser) spawns that many listeners in ``SPAWN_SECONDS``, resets its statistics once they are
all running (``--reset-stats``) and drives them for ``--step-seconds``: each listener waits 1-3 s
between actions, chosen by weight: a progress save 8 (so one every ~5 s per listener), a 256 KiB
range of the signed stream URL 6, a search with words of a real title 2, a genre list, a book's
detail, its similar list and a playback start (``GET /playback/``, the signed URL) 1 each. Locust's
own CSV statistics of each step (requests/s, p50/p95/p99, failures, per request type and in total)
go to ``bench/results/load_mixed.json``, with the highest step whose total p99 was under 100 ms with
no failure. The service keeps its data between steps (the listeners' progress and plays grow).

The demo files are 135-240 KB (24 kbit/s), so a 256 KiB range runs to the file's end: a read sends
what is left of the file from the listener's position.

``uv run python -m bench.load_mixed`` (about 15 minutes: seed 4, index 1, service and jobs 2,
listeners 1, five steps of 65 s);
``--books 2000 --users 20,40 --step-seconds 20 --output /tmp/load.json`` tries it in 2-3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.metadata
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from bench.common import (
    AUDIOVERSE,
    ROOT,
    audioverse_environment,
    fresh_postgres_database,
    production_settings,
    running_service,
)
from bench.progress_writes import listeners_for
from bench.response_cache import drop_keys
from bench.search_at_scale import (
    DEFAULT_BOOKS,
    full_reindex,
    git_revision,
    log,
    machine,
    seed,
    settle_outbox,
    wait_for_background_jobs,
)
from bench.search_freshness import background
from tests.services import run_meilisearch

RESULTS = Path(__file__).resolve().parent / "results"
LOCUSTFILE = Path(__file__).resolve().parent / "locust_mixed.py"
DEFAULT_USERS = "50,100,200,400,800"
DEFAULT_STEP_SECONDS = 60.0
SPAWN_SECONDS = 5
GOAL_P99_MS = 100
# Titles of the curated demo list come first in creation order (later books are its "Volume N").
TITLE_PAGES = 4
PAGE = 100
CPU_WARNING = "CPU usage above"


def title_words(title: str) -> list[str]:
    """The words a listener would type from a title, without the seed's "Volume N" suffix."""
    return re.findall(r"\w+", re.sub(r", Volume \d+$", "", title).lower())


def catalog_sample(base: str) -> dict[str, Any]:
    """Words of real titles, genre slugs and book ids from the seeded catalog, read through the API."""
    with httpx.Client(base_url=base, timeout=60) as http:
        oldest = [
            book
            for page in range(TITLE_PAGES)
            for book in http.get(
                "/api/audiobooks/", params={"sort": "created_at", "limit": PAGE, "offset": page * PAGE}
            ).json()["items"]
        ]
        newest = http.get("/api/audiobooks/", params={"sort": "-created_at", "limit": PAGE}).json()["items"]
        genres = [genre["slug"] for genre in http.get("/api/genres/").json()]
    return {
        "title_words": [words for book in oldest if (words := title_words(book["title"]))],
        "genres": genres,
        "book_ids": sorted({book["id"] for book in oldest + newest}),
    }


def step_row(row: dict[str, str]) -> dict[str, Any]:
    """One row of locust's ``_stats.csv`` (times in ms, locust's rounding: whole ms below 100 ms)."""
    return {
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "requests_per_second": round(float(row["Requests/s"]), 1),
        "p50_ms": int(row["50%"]) if row["50%"] != "N/A" else None,
        "p95_ms": int(row["95%"]) if row["95%"] != "N/A" else None,
        "p99_ms": int(row["99%"]) if row["99%"] != "N/A" else None,
        "max_ms": round(float(row["Max Response Time"]), 1),
    }


def run_step(
    base: str, fixture: Path, users: int, seconds: float, scratch: Path, locust_options: list[str]
) -> dict[str, Any]:
    """One headless locust run at ``users`` listeners; its statistics after every listener was spawned."""
    prefix = scratch / f"step_{users}"
    log_path = scratch / f"step_{users}.log"
    with log_path.open("wb") as output:
        subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", base,
                "--users", str(users), "--spawn-rate", str(max(users / SPAWN_SECONDS, 1)),
                "--run-time", f"{round(seconds) + SPAWN_SECONDS}s", "--reset-stats", "--only-summary",
                "--csv", str(prefix), "--fixture", str(fixture), *locust_options,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            check=False,  # locust exits 1 when a request failed: the statistics say which
        )  # fmt: skip
    stats_path = prefix.with_name(prefix.name + "_stats.csv")
    if not stats_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError("locust wrote no statistics; its last lines:\n" + "\n".join(tail))
    with stats_path.open(newline="") as stats_file:
        rows = {row["Name"]: step_row(row) for row in csv.DictReader(stats_file)}
    with prefix.with_name(prefix.name + "_failures.csv").open(newline="") as failures_file:
        failures = [
            {"request": f"{row['Method']} {row['Name']}", "error": row["Error"], "count": int(row["Occurrences"])}
            for row in csv.DictReader(failures_file)
        ]
    total = rows.pop("Aggregated")
    return {
        "users": users,
        "total": total,
        "by_request": dict(sorted(rows.items())),
        "failures": failures,
        "met_goal": total["failures"] == 0 and total["p99_ms"] is not None and total["p99_ms"] < GOAL_P99_MS,
        "every_request_type_p99_below_goal": all((row["p99_ms"] or 0) < GOAL_P99_MS for row in rows.values()),
        # The client shares the two cores: above 90 % locust's own timings include its queueing.
        "client_cpu_saturated": CPU_WARNING in log_path.read_text(errors="replace"),
    }


def print_steps(steps: list[dict[str, Any]]) -> None:
    for step in steps:
        total = step["total"]
        print(
            f"{step['users']:>5} users  {total['requests_per_second']:8.1f} req/s  p50 {total['p50_ms']} "
            f"p95 {total['p95_ms']} p99 {total['p99_ms']} ms  failures {total['failures']}"
            + ("  (goal met)" if step["met_goal"] else "")
            + ("  (client CPU > 90 %)" if step["client_cpu_saturated"] else "")
        )
        for name, row in step["by_request"].items():
            print(
                f"         {name:<24} {row['requests_per_second']:8.1f} req/s  p50 {row['p50_ms']} "
                f"p95 {row['p95_ms']} p99 {row['p99_ms']} ms  failures {row['failures']}"
            )


def user_steps(text: str) -> list[int]:
    steps = [int(part) for part in text.split(",") if part.strip()]
    if not steps or any(step < 1 for step in steps):
        raise argparse.ArgumentTypeError("a comma list of positive user counts, e.g. 50,100,200")
    return steps


async def index_catalog(settings: Settings) -> dict[str, Any]:
    """Load the seeded catalog into Meilisearch before the service starts, so no drain runs during the load."""
    database = sqlalchemy_config(settings)
    try:
        indexed = await full_reindex(settings, database)
        indexed["outbox_rows_settled"] = await settle_outbox(database)
    finally:
        await database.get_engine().dispose()
    return indexed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=DEFAULT_BOOKS)
    parser.add_argument("--users", type=user_steps, default=user_steps(DEFAULT_USERS), help="comma list of steps")
    parser.add_argument("--step-seconds", type=float, default=DEFAULT_STEP_SECONDS)
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument(
        "--anonymous-discovery",
        action="store_true",
        help="discovery reads without the listener's token, as the shared response cache answers them",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "load_mixed.json")
    args = parser.parse_args()
    run = secrets.token_hex(4)
    namespace, queue = f"avbench{run}", f"avbench{run}:tasks"
    started_at, started = datetime.now(UTC), time.monotonic()
    report: dict[str, Any] = {
        "benchmark": "load_mixed",
        "date": started_at.isoformat(timespec="seconds"),
        "profile": "production: PostgreSQL + Redis + Meilisearch, a worker and the scheduler, "
        f"audioverse run --web-concurrency {args.web_concurrency}; no nginx (the app serves stream ranges)",
        "books": args.books,
        "user_steps": args.users,
        "step_seconds": args.step_seconds,
        "spawn_seconds_before_each_step": SPAWN_SECONDS,
        "discovery": "anonymous" if args.anonymous_discovery else "signed in (the listener's bearer token)",
        "listener": "locust FastHttpUser, 1-3 s between actions; weights: progress save 8, 256 KiB stream range 6, "
        "search 2, list by genre 1, book detail 1, similar 1, playback start 1",
        "goal": f"the highest step with total p99 < {GOAL_P99_MS} ms and no failure",
        "client": "one locust process on the same machine (it shares the cores)",
        "machine": {**machine(), "load_average_at_start": [round(load, 2) for load in os.getloadavg()]},
        "versions": {"audioverse": git_revision(), "locust": importlib.metadata.version("locust")},
    }
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="audioverse-bench-load-")))
        database_url = stack.enter_context(fresh_postgres_database())
        meilisearch = stack.enter_context(run_meilisearch(scratch))
        stack.callback(lambda: asyncio.run(drop_keys(namespace, queue)))
        settings = {
            **production_settings(database_url, namespace, meilisearch, f"load_{run}"),
            # Signing up the listeners is set-up: cheap hashes and no limit on it.
            "password_hash_profile": "cheapest",
            "auth_rate_limit": "1000000",
            # The listeners log in once, before every step: their tokens must outlive the run.
            "access_token_minutes": "600",
        }
        data_dir = scratch / "var"
        environment = audioverse_environment(data_dir, **settings)
        log(f"seeding {args.books} books")
        report["seed_seconds"] = round(seed(data_dir, args.books, settings), 1)
        log("indexing them into Meilisearch")
        service_settings = Settings.from_env(environment)
        report["index"] = asyncio.run(index_catalog(service_settings))
        log("starting a worker and the scheduler; the seed's background jobs (the recommendation rebuild) run")
        stack.enter_context(background(data_dir, environment, "worker", "--workers", "1"))
        stack.enter_context(background(data_dir, environment, "scheduler"))
        # Before the service starts: the rebuild would compete with its start, and later with the load.
        report["background_jobs_seconds"] = round(asyncio.run(wait_for_background_jobs(service_settings)), 1)
        # The worker has emptied its queue, so it answers at once; one that died would fail the run here.
        subprocess.run([AUDIOVERSE, "ping", "--worker"], env=environment, check=True, capture_output=True, timeout=60)
        log("starting the service")
        base, _ = stack.enter_context(
            running_service(data_dir, "--web-concurrency", str(args.web_concurrency), **settings)
        )
        log(f"registering {max(args.users)} listeners")
        listeners = asyncio.run(listeners_for(base, max(args.users), run))
        fixture = scratch / "fixture.json"
        fixture.write_text(
            json.dumps(
                catalog_sample(base)
                | {
                    "listeners": [
                        {"authorization": one.headers["Authorization"], "device": one.device, "book_id": one.book_id}
                        for one in listeners
                    ]
                }
            )
        )
        locust_options = ["--anonymous-discovery"] if args.anonymous_discovery else []
        steps = []
        for users in args.users:
            log(f"{users} users for {args.step_seconds:g} s")
            steps.append(run_step(base, fixture, users, args.step_seconds, scratch, locust_options))
            print_steps(steps[-1:])
    report["steps"] = steps
    held = [step for step in steps if step["met_goal"]]
    report["highest_step_meeting_goal"] = (
        {"users": best["users"], "requests_per_second": best["total"]["requests_per_second"]}
        if (best := max(held, key=lambda step: step["users"], default=None))
        else None
    )
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"highest_step_meeting_goal": report["highest_step_meeting_goal"]}))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
