"""The rate limiter admits exactly ``limit`` of many concurrent attempts, in memory and on Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from audioverse.errors import TooManyRequests
from audioverse.ratelimit import MemoryWindowCounter, RateLimiter, RedisWindowCounter, WindowCounter
from tests.services import REDIS_URL, fresh_redis_namespace


@pytest.fixture(params=["memory", "redis"])
async def counter(request: pytest.FixtureRequest) -> AsyncIterator[WindowCounter]:
    if request.param == "memory":
        yield MemoryWindowCounter()
        return
    async with fresh_redis_namespace() as namespace:
        redis = Redis.from_url(REDIS_URL)
        try:
            yield RedisWindowCounter(redis, prefix=namespace)
        finally:
            await redis.aclose()


async def attempt(limiter: RateLimiter, *keys: str) -> int | None:
    """None when admitted, else the Retry-After seconds of the 429."""
    try:
        await limiter.hit(*keys)
    except TooManyRequests as exc:
        return int((exc.headers or {})["Retry-After"])
    return None


async def test_fifty_concurrent_hits_admit_exactly_the_limit(counter: WindowCounter) -> None:
    limiter = RateLimiter(counter, limit=10, window_seconds=30)
    outcomes = await asyncio.gather(*(attempt(limiter, "client:a", "account:b") for _ in range(50)))
    assert outcomes.count(None) == 10
    refused = [seconds for seconds in outcomes if seconds is not None]
    assert len(refused) == 40
    assert all(1 <= seconds <= 30 for seconds in refused)


async def test_keys_are_counted_apart(counter: WindowCounter) -> None:
    limiter = RateLimiter(counter, limit=2, window_seconds=30)
    assert [await attempt(limiter, "account:x") for _ in range(3)][:2] == [None, None]
    assert await attempt(limiter, "account:y") is None
    # Over on one key refuses the attempt even when the other key is fresh.
    assert await attempt(limiter, "client:new", "account:x") is not None


async def test_a_new_window_admits_again(counter: WindowCounter) -> None:
    limiter = RateLimiter(counter, limit=3, window_seconds=1)
    outcomes = await asyncio.gather(*(attempt(limiter, "account:c") for _ in range(10)))
    assert outcomes.count(None) == 3
    assert set(outcomes) - {None} == {1}
    await asyncio.sleep(1.1)
    outcomes = await asyncio.gather(*(attempt(limiter, "account:c") for _ in range(10)))
    assert outcomes.count(None) == 3
