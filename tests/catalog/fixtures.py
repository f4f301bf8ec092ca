"""Catalog fixtures: books put straight into the database, and signed-in uploaders and curators."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from audioverse.accounts.models import Role, User
from audioverse.catalog.models import Chapter
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.catalog.services import AudiobookService
from audioverse.config import Settings
from audioverse.jobs import TaskQueue, send_after_commit
from audioverse.response_cache import bump_content_version
from audioverse.storage import build_storage
from tests.accounts.test_auth_flow import login, register
from tests.factories import AudiobookFactory
from tests.services import Identity, database_for

MakeBook = Callable[..., Awaitable[int]]
Tokens = dict[str, Any]


@pytest.fixture
def tag() -> str:
    """A value unique to one test, to scope list queries to that test's books."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
async def make_book(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, client: AsyncTestClient[Litestar]
) -> MakeBook:
    """Insert a book (with people, genres and chapters by name) and return its id."""
    return book_maker(settings, tmp_path_factory, client)


def book_maker(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, client: AsyncTestClient[Litestar] | None = None
) -> MakeBook:
    """What ``make_book`` gives, for any deployment's settings.

    With the ``client`` of a running app, the search drain each book asks for is sent at once through
    the app's broker on the app's loop, as the app sends its own; without it the job waits for the sweep.
    """

    async def make(
        *,
        title: str = "Untitled",
        authors: tuple[str, ...] = ("Anonymous",),
        narrators: tuple[str, ...] = (),
        genres: tuple[str, ...] = (),
        duration: float = 3600.0,
        release: date | None = None,
        language: str = "en",
        rating: float = 0.0,
        plays: int = 0,
        uploader: int | None = None,
        chapters: int = 2,
        audio: bytes | None = None,
    ) -> int:
        audio_key = f"audiobooks/{secrets.token_hex(6)}/audio.mp3"
        if audio is not None:
            source = tmp_path_factory.mktemp("audio") / "audio.mp3"
            source.write_bytes(audio)
            await build_storage(settings).put_file(audio_key, source, "audio/mpeg")
        step = duration / chapters
        async with database_for(settings) as database:
            install_catalog_outbox(database)  # each book reaches the search index as one the app writes does
            stop_sending = None
            if client is not None:
                app_loop = client.blocking_portal.call(asyncio.get_running_loop)
                stop_sending = send_after_commit(database, TaskQueue(client.app.state.broker), app_loop)
            try:
                async with database.get_session() as session:
                    audiobooks = AudiobookService(session=session)
                    book = AudiobookFactory.build(
                        **await audiobooks.related(authors=authors, narrators=narrators, genres=genres),
                        title=title,
                        duration_seconds=duration,
                        release_date=release,
                        language=language,
                        average_rating=Decimal(str(rating)),
                        play_count=plays,
                        bitrate=64000,
                        audio_key=audio_key,
                        uploaded_by_id=uploader,
                        chapters=[
                            Chapter(
                                chapter_number=n + 1,
                                title=f"Part {n + 1}",
                                start_time_seconds=round(n * step, 3),
                                end_time_seconds=round((n + 1) * step, 3),
                            )
                            for n in range(chapters)
                        ],
                    )
                    session.add(book)
                    await session.commit()
                    book_id: int = book.id
            finally:
                if stop_sending is not None:
                    stop_sending()
        if client is not None:
            client.blocking_portal.call(job_sends_finished)
            # As the app's own commits do: cached answers that did not show the book end.
            client.blocking_portal.call(bump_content_version, client.app.state.search_store)
        return book_id

    return make


async def job_sends_finished() -> None:
    """On the app's loop: wait for the job sends its commits scheduled there (``send_after_commit``).

    A commit schedules them before it returns, so they are tasks of this loop by the time this runs;
    the book's drain is then sent before ``make_book`` returns, never inside what the test records next.
    """
    sends = [
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and getattr(task.get_coro(), "__qualname__", "") == "send_after_commit.<locals>.send"
    ]
    await asyncio.gather(*sends, return_exceptions=True)


async def account(
    client: AsyncTestClient[Litestar], settings: Settings, role: Role = Role.LISTENER, *, verified: bool
) -> Tokens:
    identity = Identity.new()
    await register(client, identity)
    async with database_for(settings) as database, database.get_session() as session:
        account = await session.scalar(select(User).where(User.username == identity.username))
        assert account is not None
        account.role = role
        account.is_verified = verified
        await session.commit()
        user_id = account.id
    tokens = await login(client, identity.username, identity.password)
    tokens["user_id"] = user_id
    return tokens


@pytest.fixture
async def uploader(client: AsyncTestClient[Litestar], settings: Settings) -> Tokens:
    return await account(client, settings, Role.LISTENER, verified=True)


@pytest.fixture
async def other_listener(client: AsyncTestClient[Litestar], settings: Settings) -> Tokens:
    return await account(client, settings, Role.LISTENER, verified=True)


@pytest.fixture
async def unverified(client: AsyncTestClient[Litestar], settings: Settings) -> Tokens:
    return await account(client, settings, Role.LISTENER, verified=False)


@pytest.fixture
async def curator(client: AsyncTestClient[Litestar], settings: Settings) -> Tokens:
    return await account(client, settings, Role.CURATOR, verified=True)
