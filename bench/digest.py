"""The weekly digest for many listeners at once: total time and peak memory of the task, at two sizes.

The production database (a throwaway PostgreSQL one) holds the seeded demo catalog (``audioverse
seed``) and ``--users`` verified listeners whose digest hour and day are now, each with a few books
in their library (so their recommendations and genres have something to start from). In a child
process of its own a recommendation rebuild first puts every listener's list in Redis (timed
apart), then the summary task (``notifications.send_summaries_and_digests``, the worker's own
function) runs for the first ``--sizes`` listeners, and again in a fresh child for all of them: each
digest (and daily release summary) is decided, rendered and its delivery deferred (the job rows are
written; nothing is mailed). Writes seconds, listeners per second and the child's peak RSS per size to
``bench/results/digest.json``: memory must not grow with the number of listeners (read in batches).

``uv run python -m bench.digest`` (about 20 minutes at 100,000) or ``--users 5000 --sizes 1000`` to try.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import secrets
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from audioverse.catalog.indexing import build_search_engine, search_store_for
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from audioverse.notifications.jobs import make_summary_task
from audioverse.recommendations.services import RecommendationCache, digest_picks, rebuild
from audioverse.storage import build_storage
from audioverse.task_runtime import TaskResources
from bench.common import AUDIOVERSE, audioverse_environment, fresh_postgres_database
from bench.response_cache import REDIS_URL, drop_keys

RESULTS = Path(__file__).resolve().parent / "results"
BOOKS_PER_LISTENER = 3


async def add_listeners(url: str, users: int) -> None:
    """``users`` verified listeners due now (their digest day and hour in UTC), each keeping a few books."""
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await connection.execute(
            """
            INSERT INTO user_account (email, username, password_hash, bio, role, is_verified,
                default_playback_speed, credentials_changed_at, created_at, updated_at)
            SELECT 'listener' || n || '@bench.local', 'listener' || n, 'x', '', 'listener', true, 1.0, $1, $1, $1
            FROM generate_series(1, $2) AS n
            """,
            now,
            users,
        )
        await connection.execute(
            """
            INSERT INTO notification_preferences (user_id, new_releases, weekly_digest, digest_day, digest_hour,
                time_zone, created_at, updated_at)
            SELECT id, 'daily', true, $1, $2, 'UTC', $3, $3 FROM user_account WHERE email LIKE '%@bench.local'
            """,
            now.weekday(),
            now.hour,
            now,
        )
        await connection.execute(
            """
            INSERT INTO library_entry (user_id, audiobook_id, is_favorite, created_at, updated_at)
            SELECT u.id, b.id, false, $1, $1
            FROM user_account u
            CROSS JOIN LATERAL (
                SELECT id FROM audiobook ORDER BY (id * 7919 + u.id * 104729) % 1000003 LIMIT $2
            ) b
            WHERE u.email LIKE '%@bench.local'
            """,
            now,
            BOOKS_PER_LISTENER,
        )
    finally:
        await connection.close()


def rebuild_lists(settings: Settings, out: Any) -> None:
    """In a process of its own (its memory is not the digest's): every listener's list, into Redis."""

    async def run() -> float:
        database = sqlalchemy_config(settings)
        store = search_store_for(settings)
        claim = await RecommendationCache(store).claim()
        assert claim is not None
        started = time.perf_counter()
        await rebuild(database, store, claim)
        await database.get_engine().dispose()
        return time.perf_counter() - started

    out.put(round(asyncio.run(run()), 1))


def in_child(target: Any, *args: Any) -> Any:
    queue: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def run_digests(settings: Settings, listeners: int, out: Any) -> None:
    """In a fresh process: the summary task over the first ``listeners`` listeners (the rest unverified)."""

    async def run() -> dict[str, Any]:
        database = sqlalchemy_config(settings)
        async with database.get_engine().begin() as connection:
            await connection.exec_driver_sql("DELETE FROM notification_sent")
            await connection.exec_driver_sql("DELETE FROM job_outbox")
            await connection.exec_driver_sql(f"UPDATE user_account SET is_verified = (id <= {int(listeners)})")
        resources = TaskResources(
            settings=settings,
            database=database,
            storage=build_storage(settings),
            search=build_search_engine(settings),
            search_store=search_store_for(settings),
        )
        task = make_summary_task(digest_picks)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        decided = await task(resources)
        seconds = time.perf_counter() - started
        await database.get_engine().dispose()
        return {
            "listeners": listeners,
            "mails_decided": decided,
            "seconds": round(seconds, 1),
            "listeners_per_second": round(listeners / seconds, 1),
            "rss_before_mib": round(before / 1024, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }

    out.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000])
    parser.add_argument("--books", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS / "digest.json")
    args = parser.parse_args()
    namespace = f"avbench{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch, fresh_postgres_database() as url:
        data_dir = Path(scratch) / "var"
        environment = audioverse_environment(
            data_dir, database_url=url, secret_key="b" * 48, redis_url=REDIS_URL, redis_namespace=namespace
        )
        started = time.perf_counter()
        subprocess.run(
            [AUDIOVERSE, "seed", "--books", str(args.books)], env=environment, check=True, capture_output=True
        )
        asyncio.run(add_listeners(url, args.users))
        prepare_seconds = time.perf_counter() - started
        settings = Settings.from_env(environment)
        try:
            rebuild_seconds = in_child(rebuild_lists, settings)
            print("rebuild", rebuild_seconds, flush=True)
            runs = []
            for size in [*args.sizes, args.users]:
                runs.append(in_child(run_digests, settings, size))
                print(runs[-1], flush=True)
        finally:
            asyncio.run(drop_keys(namespace, settings.task_queue_name))
    result = {
        "benchmark": "digest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": "PostgreSQL + Redis; recommendations from the rebuilt lists in Redis; deliveries deferred",
        "catalog_books": args.books,
        "books_per_listener": BOOKS_PER_LISTENER,
        "prepare_seconds": round(prepare_seconds, 1),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "recommendation_rebuild_seconds": rebuild_seconds,
        "runs": runs,
        "peak_rss_growth_mib": round(runs[-1]["peak_rss_mib"] - runs[0]["peak_rss_mib"], 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
