"""CPU the idle scheduler spends finding due retries, with retries beside many keys or in a database of their own.

taskiq-redis's ``ListRedisScheduleSource`` finds past-due retries by a ``SCAN`` of every key of its
database on each read of its sources (every 5 s, ``audioverse scheduler``'s default), so its cost grows
with whatever else that database holds: in production the response cache and the recommendation lists.
This fills the main database with ``--keys`` keys (as many cached entries), runs the real
``audioverse scheduler`` with no retry waiting, and reads the CPU it and Redis spend over ``--seconds``:
first with ``AUDIOVERSE_REDIS_RETRIES_URL`` unset (the retries share the main database), then with
the retries in a database of their own. Needs Redis; its keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.common import AUDIOVERSE, audioverse_environment
from bench.response_cache import drop_keys
from bench.search_at_scale import git_revision, log, machine
from bench.stream_throughput import cpu_seconds
from tests.services import REDIS_RETRIES_URL, REDIS_URL

RESULTS = Path(__file__).resolve().parent / "results"
FILL_BATCH = 10_000
WARMUP_SECONDS = 10.0
"""The scheduler's start (imports, the first reads) is left out of the measure."""


async def fill(namespace: str, keys: int) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        for start in range(0, keys, FILL_BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for n in range(start, min(keys, start + FILL_BATCH)):
                    pipe.set(f"{namespace}:response:v1:{n}", b"a cached answer")
                await pipe.execute()
    finally:
        await redis.aclose()


async def redis_cpu_seconds() -> float:
    redis = Redis.from_url(REDIS_URL)
    try:
        cpu = await redis.info("cpu")
        return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    finally:
        await redis.aclose()


def measure(namespace: str, seconds: float, retries_url: str | None) -> dict[str, Any]:
    """The idle scheduler's CPU, and Redis's, per second over ``seconds``."""
    settings = {"redis_url": REDIS_URL, "redis_namespace": namespace, "task_queue_name": f"{namespace}:tasks"}
    if retries_url:
        settings["redis_retries_url"] = retries_url
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-scheduler-") as scratch:
        environment = audioverse_environment(Path(scratch), **settings)
        scheduler = subprocess.Popen([AUDIOVERSE, "scheduler"], env=environment)
        try:
            time.sleep(WARMUP_SECONDS)
            scheduler_before, redis_before = cpu_seconds(scheduler.pid), asyncio.run(redis_cpu_seconds())
            time.sleep(seconds)
            scheduler_after, redis_after = cpu_seconds(scheduler.pid), asyncio.run(redis_cpu_seconds())
        finally:
            scheduler.terminate()
            scheduler.wait(timeout=30)
    return {
        "retries_url": retries_url or "(unset: the main database)",
        "scheduler_cpu_share_of_a_core": round((scheduler_after - scheduler_before) / seconds, 3),
        "redis_cpu_share_of_a_core": round((redis_after - redis_before) / seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "scheduler_scan.json")
    args = parser.parse_args()
    namespace = f"avbench{secrets.token_hex(4)}"
    report: dict[str, Any] = {
        "benchmark": "scheduler_scan",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "keys_in_the_main_database": args.keys,
        "seconds": args.seconds,
        "machine": machine(),
        "versions": {"audioverse": git_revision()},
    }
    try:
        log(f"filling the main database with {args.keys} keys")
        asyncio.run(fill(namespace, args.keys))
        report["runs"] = []
        for retries_url in (None, REDIS_RETRIES_URL):
            log(f"the idle scheduler, retries in {retries_url or 'the main database'}, {args.seconds:g} s")
            report["runs"].append(measure(namespace, args.seconds, retries_url))
            print(json.dumps(report["runs"][-1]))
    finally:
        asyncio.run(drop_keys(namespace, f"{namespace}:tasks"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
