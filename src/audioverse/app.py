"""The composition root: ``create_app()`` wires settings, plugins, stores, broker and routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.data_extractors import RequestExtractorField, ResponseExtractorField
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging.config import StructLoggingConfig
from litestar.middleware.logging import LoggingMiddlewareConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
from litestar.response import Redirect
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry
from redis.asyncio import Redis
from taskiq import InMemoryBroker

from audioverse import __version__
from audioverse.accounts.auth import build_jwt_auth
from audioverse.accounts.controllers import AdminUsersController, AuthController, ProfileController
from audioverse.allow import list_every_allowed_method
from audioverse.catalog.controllers import (
    AudiobookController,
    AuthorController,
    GenreController,
    NarratorController,
)
from audioverse.catalog.indexing import DRAIN_TASK, build_search_engine
from audioverse.catalog.outbox import on_catalog_commit
from audioverse.catalog.search_controllers import SearchAdminController, SearchController
from audioverse.catalog.seed import DemoSeeder
from audioverse.cli import AudioverseCLIPlugin
from audioverse.config import Settings
from audioverse.db import ensure_data_dir, litestar_sqlalchemy_config, migrate_to_head
from audioverse.errors import problem_details_plugin
from audioverse.health import HealthController, ReadinessProbes, database_probe
from audioverse.jobs import TaskQueue, build_broker, in_process_scheduler
from audioverse.listening.controllers import (
    BookmarkController,
    LibraryController,
    ListeningController,
    PlaybackController,
    ProgressController,
    StreamController,
)
from audioverse.model_registry import catalog_outbox  # noqa: F401  (outbox rows on every catalog flush)
from audioverse.openapi import ClosedStructSchemaPlugin, ContractDocs
from audioverse.ratelimit import RateLimiter
from audioverse.reviews.controllers import BookReviewsController, ReviewController
from audioverse.signing import resolve_secret_key
from audioverse.storage import Storage, build_storage
from search import SearchEngineError
from tasks import register_tasks
from tasks.runtime import search_store_for

OPENAPI_PATH = "/api/schema"


@get("/api/docs", include_in_schema=False, cache=False)
async def docs_redirect() -> Redirect:
    """Interactive docs live with the schema; this keeps the contract's short address."""
    return Redirect(f"{OPENAPI_PATH}/swagger")


def _stores(settings: Settings, redis: Redis | None) -> StoreRegistry:
    if redis is None:
        return StoreRegistry(default_factory=lambda _name: MemoryStore())
    root = RedisStore(redis, namespace=settings.redis_namespace, handle_client_shutdown=False)
    return StoreRegistry(default_factory=root.with_namespace)


REQUEST_LOG_FIELDS: tuple[RequestExtractorField, ...] = ("path", "method", "query", "client")
RESPONSE_LOG_FIELDS: tuple[ResponseExtractorField, ...] = ("status_code",)


async def seed_if_empty(database: SQLAlchemyAsyncConfig, storage: Storage, books: int) -> None:
    async with database.get_session() as session:
        seeder = DemoSeeder(session, storage)
        if await seeder.is_empty():
            logger = structlog.get_logger(__name__)
            logger.info("seeding the demo catalog", books=books)
            await seeder.seed(books)
            logger.info("demo catalog ready", books=books)


_kicks: set[asyncio.Task[Any]] = set()


def kick_search_sync(task_queue: TaskQueue, loop: asyncio.AbstractEventLoop) -> None:
    """Ask for an outbox drain now, from the app's event loop (whose broker connections it uses).

    It runs inside a commit, so the request is sent from a new task; a commit made on another
    thread's loop hands the request over to the app's loop.
    """
    coroutine = task_queue.enqueue(DRAIN_TASK)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        task = loop.create_task(coroutine)
        _kicks.add(task)
        task.add_done_callback(_kicks.discard)
    else:
        asyncio.run_coroutine_threadsafe(coroutine, loop)


def request_logging_config() -> LoggingMiddlewareConfig:
    """Log each request line and response status; bodies carry passwords and tokens, so never them."""
    return LoggingMiddlewareConfig(
        request_log_fields=REQUEST_LOG_FIELDS,
        response_log_fields=RESPONSE_LOG_FIELDS,
        request_headers_to_obfuscate={"Authorization", "Cookie"},
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the AudioVerse application for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    ensure_data_dir(settings)
    secret_key = resolve_secret_key(settings)
    database = litestar_sqlalchemy_config(settings)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    storage = build_storage(settings)
    search = build_search_engine(settings)
    search_store = search_store_for(settings)
    broker = build_broker(settings)
    # An in-process broker runs tasks beside the API, so they share the app's engine and store.
    shared = isinstance(broker, InMemoryBroker)
    register_tasks(broker, settings, search=search if shared else None, search_store=search_store if shared else None)
    task_queue = TaskQueue(broker)

    jwt_auth = build_jwt_auth(secret_key, settings.access_token_minutes)
    stores = _stores(settings, redis)
    auth_rate_limiter = RateLimiter(
        stores.get("auth-rate-limit"),
        limit=settings.auth_rate_limit,
        window_seconds=settings.auth_rate_window_seconds,
    )

    readiness = ReadinessProbes(settings.readiness_timeout_seconds)
    readiness.add("database", database_probe(database.get_engine()))
    readiness.add("storage", storage.check)
    if redis is not None:
        readiness.add("broker", redis.ping)
    readiness.add("search", search.health)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.migrate_on_startup:
            await migrate_to_head(database)
        if settings.seed_demo_on_startup:
            await seed_if_empty(database, storage, settings.demo_books)
        try:
            await search.configure()
        except SearchEngineError as exc:
            # Searches answer 503 and /api/ready names the engine until it is back; the rest works.
            structlog.get_logger(__name__).warning("search engine not configured", error=str(exc))
        await broker.startup()
        loop = asyncio.get_running_loop()
        remove_hook = on_catalog_commit(lambda: kick_search_sync(task_queue, loop))
        try:
            async with in_process_scheduler(broker):
                yield
        finally:
            remove_hook()
            if isinstance(broker, InMemoryBroker):
                # Let in-process tasks finish before the engine and database they write to close.
                await broker.wait_all()
            await broker.shutdown()
            await search.close()
            if redis is not None:
                await redis.aclose()

    logging_plugin = StructlogPlugin(
        StructlogConfig(
            structlog_logging_config=StructLoggingConfig(
                log_exceptions="debug",
                pretty_print_tty=not settings.log_json,
                wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(settings.log_level)),
            ),
            middleware_logging_config=request_logging_config(),
        )
    )

    return Litestar(
        route_handlers=[
            HealthController,
            docs_redirect,
            AuthController,
            ProfileController,
            AdminUsersController,
            AudiobookController,
            AuthorController,
            NarratorController,
            GenreController,
            SearchController,
            SearchAdminController,
            BookReviewsController,
            ReviewController,
            PlaybackController,
            StreamController,
            BookmarkController,
            ProgressController,
            LibraryController,
            ListeningController,
        ],
        on_app_init=[jwt_auth.on_app_init],
        plugins=[
            SQLAlchemyPlugin(config=database),
            problem_details_plugin(),
            ContractDocs(jwt_auth),
            ClosedStructSchemaPlugin(),
            logging_plugin,
            AudioverseCLIPlugin(),
        ],
        lifespan=[lifespan],
        before_send=[list_every_allowed_method],
        stores=stores,
        state=State(
            {
                "settings": settings,
                "readiness": readiness,
                "storage": storage,
                "broker": broker,
                "jwt_auth": jwt_auth,
                "database": database,
                "secret_key": secret_key,
                "search": search,
                "search_store": search_store,
            }
        ),
        dependencies={
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
            "storage": Provide(lambda: storage, sync_to_thread=False, use_cache=True),
            "task_queue": Provide(lambda: task_queue, sync_to_thread=False, use_cache=True),
            "auth_rate_limiter": Provide(lambda: auth_rate_limiter, sync_to_thread=False, use_cache=True),
        },
        cors_config=CORSConfig(allow_origins=settings.cors_allow_origins) if settings.cors_allow_origins else None,
        openapi_config=OpenAPIConfig(
            title="AudioVerse API",
            version=__version__,
            description="Audiobook streaming: catalog, search, listening, reviews, recommendations.",
            path=OPENAPI_PATH,
            render_plugins=[SwaggerRenderPlugin(path="/swagger"), JsonRenderPlugin()],
        ),
        debug=settings.debug,
    )


__all__ = ["Storage", "create_app"]
