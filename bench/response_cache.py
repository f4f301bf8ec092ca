"""Hot anonymous discovery reads with the shared response cache and without it, side by side, production profile.

A throwaway PostgreSQL database seeded with ``audioverse seed --books N`` (demo books), Redis for the
cache, the broker and the stores (keys under a namespace of this run, deleted at the end; no worker:
these routes read the database and the stores only). The same service is started twice on that data:
``AUDIOVERSE_RESPONSE_CACHE_SECONDS=60`` and ``=0``. Each time ``--concurrency`` clients (one
kept-alive connection each, in this process) send the hot requests for ``--seconds``: a filtered,
sorted list of books, a book's detail, and its similar list, cycling through ``--variants`` of each
(so the cache holds several entries, as real traffic makes it). Writes requests/s and p50/p95/p99 per
route and profile to ``bench/results/response_cache.json``.

``uv run python -m bench.response_cache`` (about 2 minutes).
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.common import AUDIOVERSE, audioverse_environment, fresh_postgres_database, running_service
from bench.recommendations_api import percentiles
from tests.services import REDIS_RETRIES_URL

RESULTS = Path(__file__).resolve().parent / "results"
REDIS_URL = os.environ.get("AUDIOVERSE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SEED_TIMEOUT_SECONDS = 900


def hot_requests(base: str, variants: int) -> dict[str, list[str]]:
    """Paths of the hot routes, ``variants`` each, from the seeded catalog."""
    genres = [genre["slug"] for genre in httpx.get(f"{base}/api/genres/").json()][:variants]
    books = [book["id"] for book in httpx.get(f"{base}/api/audiobooks/", params={"limit": variants}).json()["items"]]
    return {
        "list_filtered": [f"/api/audiobooks/?genre={genre}&sort=-average_rating&limit=20" for genre in genres],
        "book_detail": [f"/api/audiobooks/{book}/" for book in books],
        "similar": [f"/api/audiobooks/{book}/similar/" for book in books],
    }


async def drive(base: str, paths: list[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` clients sending ``paths`` in turn for ``seconds``: requests/s and latency percentiles."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        nonlocal failures
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for path in paths:  # one untimed pass warms the cache (and the connection)
                await http.get(path)
            n = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await http.get(paths[n % len(paths)])
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200
                n += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "failures": failures, "rps": round(len(latencies) / elapsed, 1)} | (
        percentiles(latencies)
    )


async def drop_keys(namespace: str, queue: str) -> None:
    for url in (REDIS_URL, REDIS_RETRIES_URL):
        redis = Redis.from_url(url)
        try:
            keys = [key async for key in redis.scan_iter(match=f"{namespace}*")]
            if keys:
                await redis.delete(*keys)
            await redis.delete(queue)
        finally:
            await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS / "response_cache.json")
    args = parser.parse_args()
    run = secrets.token_hex(4)
    namespace, queue = f"avbench{run}", f"avbench{run}:tasks"
    report: dict[str, Any] = {
        "benchmark": "response_cache",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": "production: PostgreSQL + Redis (cache, broker, stores), audioverse run, one process",
        "books": args.books,
        "concurrency": args.concurrency,
        "seconds_per_route": args.seconds,
        "variants_per_route": args.variants,
        "client": "httpx.AsyncClient, one kept-alive connection per client, same machine (shares the 2 cores)",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "routes": {},
    }
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch, fresh_postgres_database() as url:
        settings = {
            "database_url": url,
            "redis_url": REDIS_URL,
            "redis_namespace": namespace,
            "task_queue_name": queue,
            "secret_key": secrets.token_urlsafe(48),
        }
        data_dir = Path(scratch) / "var"
        try:
            started = time.perf_counter()
            subprocess.run(
                [AUDIOVERSE, "seed", "--books", str(args.books)],
                env=audioverse_environment(data_dir, **settings),
                capture_output=True,
                timeout=SEED_TIMEOUT_SECONDS,
                check=True,
            )
            report["seed_seconds"] = round(time.perf_counter() - started, 1)
            for label, seconds in (("cached", "60"), ("uncached", "0")):
                with running_service(data_dir, **settings, response_cache_seconds=seconds) as (base, _process):
                    requests = hot_requests(base, args.variants)
                    for route, paths in requests.items():
                        measured = asyncio.run(drive(base, paths, args.concurrency, args.seconds))
                        report["routes"].setdefault(route, {})[label] = measured
                        print(route, label, measured, flush=True)
        finally:
            asyncio.run(drop_keys(namespace, queue))
    report["speedup_rps"] = {
        route: round(sides["cached"]["rps"] / sides["uncached"]["rps"], 1) for route, sides in report["routes"].items()
    }
    report["goals"] = {
        "speedup_at_least_5x": all(speedup >= 5 for speedup in report["speedup_rps"].values()),
        "cached_p99_below_20_ms": all(sides["cached"]["p99_ms"] < 20 for sides in report["routes"].values()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"speedup_rps": report["speedup_rps"], "goals": report["goals"]}, indent=2))


if __name__ == "__main__":
    main()
