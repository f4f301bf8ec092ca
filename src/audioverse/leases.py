"""A long job's status in a store beside the lease its worker renews: "running" with no lease reads as abandoned.

Readers and the worker share a store but no lock, so the order of the store operations is what keeps a
reader from calling a live or just-finished job abandoned:

- a running job's lease is set before its status, so a reader that sees "running" finds the lease;
- an ended job's status is saved before its lease is dropped, so a reader that misses the lease and reads
  the status again sees the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec
from litestar.stores.base import Store

StatusT = TypeVar("StatusT", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class LeasedStatus(Generic[StatusT]):
    store: Store
    key: str
    lease_key: str
    lease_seconds: int
    status_type: type[StatusT]
    is_running: Callable[[StatusT], bool]
    abandoned: Callable[[StatusT], StatusT]
    """The status to report for a running one whose lease lapsed (its process ended without saying so)."""

    async def read(self) -> StatusT | None:
        """The saved status (``None`` before the first job), abandoned when it says running with no lease."""
        status = await self._saved()
        if status is None or not self.is_running(status) or await self.store.exists(self.lease_key):
            return status
        status = await self._saved()  # the job may have ended between the two reads: then this sees it
        if status is not None and self.is_running(status):
            return self.abandoned(status)
        return status

    async def write(self, status: StatusT, holder: str) -> None:
        """Save ``status``; while it is running each write also renews the lease, held by ``holder``."""
        if self.is_running(status):
            await self.store.set(self.lease_key, holder, expires_in=self.lease_seconds)
            await self.store.set(self.key, msgspec.json.encode(status))
        else:
            await self.store.set(self.key, msgspec.json.encode(status))
            await self.store.delete(self.lease_key)

    async def _saved(self) -> StatusT | None:
        raw = await self.store.get(self.key)
        return msgspec.json.decode(raw, type=self.status_type) if raw else None
