"""Fixed-window rate limiting on the Litestar store (memory or Redis, by profile)."""

from __future__ import annotations

from litestar.stores.base import Store

from audioverse.errors import TooManyRequests


class RateLimiter:
    """At most ``limit`` hits per key in each ``window_seconds``; the window starts at the first hit."""

    def __init__(self, store: Store, *, limit: int, window_seconds: int) -> None:
        self.store = store
        self.limit = limit
        self.window_seconds = window_seconds

    async def hit(self, *keys: str) -> None:
        """Count one attempt against every key; raise 429 with ``Retry-After`` when one is over."""
        retry_after = 0
        for key in keys:
            stored = await self.store.get(key)
            count = int(stored or 0) + 1
            remaining = await self.store.expires_in(key) if stored is not None else None
            expires_in = remaining if remaining and remaining > 0 else self.window_seconds
            await self.store.set(key, str(count), expires_in=expires_in)
            if count > self.limit:
                retry_after = max(retry_after, expires_in)
        if retry_after:
            raise TooManyRequests(
                "Too many attempts; wait before trying again.", headers={"Retry-After": str(retry_after)}
            )
