"""Benchmark: rate limiter candidates under 50 concurrent attempts (correctness) and their hits/s.

Candidates: the former read-then-write on a Litestar store, our Lua script / in-memory counter
(``audioverse.ratelimit``), and the ``limits`` library's fixed window on its redis-py and memory
storages. Each attempt is counted against one key (an account) or two keys (the client and the account,
as the login route does). Run: uv run python -m bench.ratelimit_atomicity [--trials 20].
Needs Redis (AUDIOVERSE_TEST_REDIS, default 127.0.0.1:6379); its keys are deleted at the end.
Writes bench/results/ratelimit_atomicity.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from audioverse.errors import TooManyRequests
from audioverse.ratelimit import MemoryWindowCounter, RateLimiter, RedisWindowCounter
from bench.common import ROOT
from tests.services import REDIS_URL

LIMIT = 10
CONCURRENT = 50
WINDOW_SECONDS = 60
THROUGHPUT_ATTEMPTS = 3000
# The machine is shared, so rates swing; rounds interleave the candidates and the best of each is kept.
THROUGHPUT_ROUNDS = 3

Attempt = Callable[[tuple[str, ...]], Awaitable[bool]]


def ours(limiter: RateLimiter) -> Attempt:
    async def attempt(keys: tuple[str, ...]) -> bool:
        try:
            await limiter.hit(*keys)
        except TooManyRequests as exc:
            if int((exc.headers or {})["Retry-After"]) < 1:
                raise RuntimeError("a refusal without a usable Retry-After") from exc
            return False
        return True

    return attempt


def read_then_write(store: Store) -> Attempt:
    """The limiter as it was before: get the count, then set count + 1."""

    async def attempt(keys: tuple[str, ...]) -> bool:
        allowed = True
        for key in keys:
            stored = await store.get(key)
            count = int(stored or 0) + 1
            remaining = await store.expires_in(key) if stored is not None else None
            expires_in = remaining if remaining and remaining > 0 else WINDOW_SECONDS
            await store.set(key, str(count), expires_in=expires_in)
            allowed = allowed and count <= LIMIT
        return allowed

    return attempt


def limits_fixed_window(storage: Any) -> Attempt:
    """``limits``' fixed window: one atomic INCR+EXPIRE per key, and the expiry read for Retry-After."""
    strategy = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(LIMIT, WINDOW_SECONDS)

    async def attempt(keys: tuple[str, ...]) -> bool:
        allowed = True
        for key in keys:
            if not await strategy.hit(item, key):
                allowed = False
                assert await storage.get_expiry(item.key_for(key)) > time.time()
        return allowed

    return attempt


async def concurrent_trials(attempt: Attempt, trials: int, keys_per_attempt: int) -> dict[str, Any]:
    admitted = []
    for _ in range(trials):
        keys = tuple(f"trial-{uuid.uuid4().hex}-{n}" for n in range(keys_per_attempt))
        results = await asyncio.gather(*(attempt(keys) for _ in range(CONCURRENT)))
        admitted.append(sum(results))
    return {
        "admitted_min": min(admitted),
        "admitted_max": max(admitted),
        "trials_exactly_limit": sum(1 for count in admitted if count == LIMIT),
        "trials": trials,
    }


async def throughput(attempt: Attempt) -> float:
    """Attempts per second, 50 in flight, two fresh keys each (all admitted)."""
    gate = asyncio.Semaphore(CONCURRENT)
    prefix = uuid.uuid4().hex

    async def one(n: int) -> None:
        async with gate:
            await attempt((f"rate-{prefix}-client-{n}", f"rate-{prefix}-account-{n}"))

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(THROUGHPUT_ATTEMPTS)))
    return THROUGHPUT_ATTEMPTS / (time.perf_counter() - started)


async def run(trials: int) -> dict[str, Any]:
    namespace = f"audioverse-bench-ratelimit-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(REDIS_URL)
    # The app's own pool, as the app would share it; limits types its options as scalars only.
    limits_redis = RedisStorage(
        f"async+{REDIS_URL}",
        implementation="redispy",
        key_prefix=namespace,
        connection_pool=redis.connection_pool,  # type: ignore[arg-type]
    )
    candidates: dict[str, Attempt] = {
        "before: Litestar MemoryStore read-then-write": read_then_write(MemoryStore()),
        "before: Litestar RedisStore read-then-write": read_then_write(RedisStore(redis, namespace=namespace)),
        "chosen: in-memory counter (no await inside)": ours(
            RateLimiter(MemoryWindowCounter(), limit=LIMIT, window_seconds=WINDOW_SECONDS)
        ),
        "chosen: Redis Lua script, all keys in one call": ours(
            RateLimiter(RedisWindowCounter(redis, namespace), limit=LIMIT, window_seconds=WINDOW_SECONDS)
        ),
        "limits 5.8 MemoryStorage, FixedWindowRateLimiter": limits_fixed_window(MemoryStorage()),
        "limits 5.8 RedisStorage(implementation='redispy'), FixedWindowRateLimiter": limits_fixed_window(limits_redis),
    }
    results: dict[str, Any] = {}
    try:
        for name, attempt in candidates.items():
            results[name] = {
                "one_key": await concurrent_trials(attempt, trials, 1),
                "two_keys": await concurrent_trials(attempt, trials, 2),
                "attempts_per_second_two_keys_by_round": [],
            }
        for _ in range(THROUGHPUT_ROUNDS):
            for name, attempt in candidates.items():
                results[name]["attempts_per_second_two_keys_by_round"].append(round(await throughput(attempt)))
        for name, result in results.items():
            result["attempts_per_second_two_keys_best"] = max(result["attempts_per_second_two_keys_by_round"])
            print(name, result, flush=True)
    finally:
        async for key in redis.scan_iter(match=f"{namespace}*"):
            await redis.delete(key)
        await redis.aclose()
    return {
        "limit": LIMIT,
        "concurrent_attempts": CONCURRENT,
        "throughput_attempts": THROUGHPUT_ATTEMPTS,
        "throughput_rounds": THROUGHPUT_ROUNDS,
        "redis": REDIS_URL,
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),
        "candidates": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "ratelimit_atomicity.json"))
    args = parser.parse_args()
    report = asyncio.run(run(args.trials))
    with open(args.output, "w") as target:
        json.dump(report, target, indent=2)
        target.write("\n")


if __name__ == "__main__":
    main()
