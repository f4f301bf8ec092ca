"""The demo seed gives ``demo_listener`` a shelf worth showing: tastes the model can learn from."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from litestar.stores.memory import MemoryStore
from sqlalchemy import select

from audioverse.accounts.models import User
from audioverse.catalog.seed import RECOMMENDATIONS_REBUILD_TASK, DemoSeeder
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from audioverse.jobs import Job
from audioverse.listening.models import ListeningProgress
from audioverse.recommendations.schemas import ModelVersion
from audioverse.recommendations.services import RecommendationCache, rebuild_if_idle
from audioverse.storage import LocalStorage


async def test_the_demo_listeners_shelf_is_learned_from_the_demo_readers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    database = sqlalchemy_config(settings)
    await migrate_to_head(database)
    async with database.get_session() as session:
        await DemoSeeder(session, LocalStorage(tmp_path / "storage")).seed(120)
        listener = await session.scalar(select(User.id).where(User.username == "demo_listener"))
        assert listener is not None
        own = set(
            await session.scalars(select(ListeningProgress.audiobook_id).where(ListeningProgress.user_id == listener))
        )
        readers = await session.scalar(select(User.id).where(User.username == "demo_reader_01"))
        deferred = list(await session.scalars(select(Job.task_name)))
    assert len(own) == 6
    assert readers is not None
    assert RECOMMENDATIONS_REBUILD_TASK in deferred
    store = MemoryStore()
    status = await rebuild_if_idle(database, store)
    await database.get_engine().dispose()
    assert status.state == "succeeded", status
    assert status.users > 40
    cache = RecommendationCache(store)
    shelf = await cache.user(await cache.version(), listener)
    assert shelf is not None
    assert len(shelf.picks) >= 10
    assert not own & {pick.book for pick in shelf.picks}
    # Listeners who share the taste put books on it: the first ones are "listened with" theirs.
    assert sum(pick.collaborative for pick in shelf.picks[:10]) >= 3


async def test_a_failed_rebuild_says_why_and_keeps_the_lists_it_had(tmp_path: Path) -> None:
    database = sqlalchemy_config(Settings(data_dir=tmp_path))  # no tables: reading the signals fails
    store = MemoryStore()
    cache = RecommendationCache(store)
    await cache.swap(ModelVersion(version="old", generated_at=datetime.now(UTC)))
    status = await rebuild_if_idle(database, store)
    await database.get_engine().dispose()
    assert status.state == "failed"
    assert status.error is not None
    assert status.error.startswith("OperationalError")
    assert status.finished_at is not None
    assert (await cache.status())[1].state == "failed"
    current = await cache.version()
    assert current is not None
    assert current.version == "old"
