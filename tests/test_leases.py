"""A job's status read at the moment its worker starts or ends it is the job's, never "abandoned"."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar.stores.memory import MemoryStore

from audioverse.leases import LeasedStatus

STATUS_KEY, LEASE_KEY = "job", "job:lease"


class Job(msgspec.Struct):
    state: Literal["running", "done", "abandoned"]


def job_status(store: MemoryStore) -> LeasedStatus[Job]:
    return LeasedStatus(
        store,
        STATUS_KEY,
        LEASE_KEY,
        60,
        Job,
        is_running=lambda job: job.state == "running",
        abandoned=lambda job: Job(state="abandoned"),
    )


class ReadAsTheStatusIsSaved(MemoryStore):
    """A store on which a reader reads the job's status right after each save of it, before anything else."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Job | None] = []

    async def set(self, key: str, value: str | bytes, expires_in: int | None = None) -> None:
        await super().set(key, value, expires_in)
        if key == STATUS_KEY:
            self.seen.append(await job_status(self).read())


class EndsBetweenTheReads(MemoryStore):
    """A store on which the job ends after a reader has read "running" and before it looks for the lease."""

    async def exists(self, key: str) -> bool:
        if key == LEASE_KEY:
            await job_status(self).write(Job(state="done"), holder="worker")
        return await super().exists(key)


async def test_a_job_read_as_it_starts_reads_as_running() -> None:
    store = ReadAsTheStatusIsSaved()
    await job_status(store).write(Job(state="running"), holder="worker")
    assert store.seen == [Job(state="running")]


async def test_a_job_that_ends_while_its_status_is_read_reads_as_ended() -> None:
    store = EndsBetweenTheReads()
    await job_status(store).write(Job(state="running"), holder="worker")
    assert await job_status(store).read() == Job(state="done")


async def test_a_running_job_whose_lease_lapsed_reads_as_abandoned_and_none_before_the_first() -> None:
    store = MemoryStore()
    assert await job_status(store).read() is None
    await job_status(store).write(Job(state="running"), holder="worker")
    assert await job_status(store).read() == Job(state="running")
    await store.delete(LEASE_KEY)
    assert await job_status(store).read() == Job(state="abandoned")
    await job_status(store).write(Job(state="done"), holder="worker")
    assert await job_status(store).read() == Job(state="done")
    assert not await store.exists(LEASE_KEY)
