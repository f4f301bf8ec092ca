"""Notification mail through an SMTP outage and two runs at once: every mail arrives, and arrives once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgspec
import pytest
from aiosmtpd.controller import Controller
from litestar import Litestar
from litestar.testing import AsyncTestClient

from audioverse.accounts.models import Role
from audioverse.app import create_app
from audioverse.config import Settings
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import Tokens, account, book_maker
from tests.notifications.test_notifications import FOLLOWS, PREFERENCES, RELEASES, author_id, email_of, settle
from tests.services import (
    Mailbox,
    SmtpServer,
    free_port,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_scheduler,
    run_worker,
    worker_answers,
)

pytestmark = pytest.mark.slow
Client = AsyncTestClient[Litestar]
# The email job's retries come 5, 10, 20 s… apart (with jitter); two of them fit.
DELIVERY_WAIT_SECONDS = 60


class RestartableSmtp:
    """A real SMTP server (aiosmtpd) that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.handler = SmtpServer(host="127.0.0.1", port=free_port())
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.handler.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@contextmanager
def smtp_server() -> Iterator[RestartableSmtp]:
    server = RestartableSmtp()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Stack:
    settings: Settings
    client: Client
    smtp: RestartableSmtp
    mailbox: Mailbox
    curator: Tokens


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The production profile with its own SMTP server, worker and scheduler."""
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        with smtp_server() as smtp:
            settings = production_settings(
                tmp_path_factory.mktemp("delivery-data"),
                database_url=database_url,
                namespace=namespace,
                meilisearch=None,
                smtp=smtp.handler,
            )
            # The embedded index takes one process: the worker's is its own (these tests never search).
            worker_settings = msgspec.structs.replace(settings, search_dir=settings.data_dir / "worker-search")
            with run_worker(worker_settings), run_scheduler(worker_settings):
                async with AsyncTestClient(app=create_app(settings)) as client:
                    await worker_answers(settings)
                    curator = await account(client, settings, Role.CURATOR, verified=True)
                    yield Stack(settings, client, smtp, Mailbox(smtp=smtp.handler), curator)


async def a_fan_of(stack: Stack, writer: str) -> str:
    """A verified listener with instant alerts who follows ``writer``; returns their address."""
    fan = await account(stack.client, stack.settings, verified=True)
    followed = await author_id(stack.settings, writer)
    assert (await stack.client.put(FOLLOWS, headers=bearer(fan), json={"authors": [followed]})).status_code == 200
    await stack.client.put(PREFERENCES, headers=bearer(fan), json={"new_releases": "instant"})
    return await email_of(stack.settings, fan)


async def test_an_alert_decided_while_smtp_is_down_arrives_once_when_it_is_back(
    stack: Stack, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    make_book = book_maker(stack.settings, tmp_path_factory, stack.client)
    await make_book(title="Before the outage", authors=("Outage Writer",))
    address = await a_fan_of(stack, "Outage Writer")
    stack.smtp.stop()
    try:
        await make_book(title="During the outage", authors=("Outage Writer",))
        started = await stack.client.post(f"/api/admin/jobs/{RELEASES}/run/", headers=bearer(stack.curator))
        assert started.status_code == 202
        await anyio.sleep(3)  # the decision is taken and the first delivery attempt fails
        assert [m for m in stack.mailbox.to(address) if "During the outage" in m["Subject"]] == []
    finally:
        stack.smtp.start()
    # Both alerts: the minute's scheduled run may have decided the earlier one just before the outage,
    # and its delivery then waits out a retry delay longer than the new one's.
    with anyio.fail_after(DELIVERY_WAIT_SECONDS):
        while not all(  # noqa: ASYNC110
            any(title in m["Subject"] for m in stack.mailbox.to(address))
            for title in ("During the outage", "Before the outage")
        ):
            await anyio.sleep(0.2)
    await settle(stack.mailbox)
    subjects = [m["Subject"] for m in stack.mailbox.to(address)]
    assert subjects.count("New: During the outage") == 1
    assert subjects.count("New: Before the outage") == 1


async def test_two_runs_at_once_decide_each_alert_once(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    make_book = book_maker(stack.settings, tmp_path_factory, stack.client)
    await make_book(title="Twice sent?", authors=("Concurrent Writer",))
    address = await a_fan_of(stack, "Concurrent Writer")
    curator = bearer(stack.curator)
    runs = await asyncio.gather(
        *(stack.client.post(f"/api/admin/jobs/{RELEASES}/run/", headers=curator) for _ in range(3))
    )
    assert [run.status_code for run in runs] == [202, 202, 202]
    await stack.mailbox.wait_for(address, "Twice sent?")
    await settle(stack.mailbox)
    assert [m["Subject"] for m in stack.mailbox.to(address)].count("New: Twice sent?") == 1
