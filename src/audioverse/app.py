"""The composition root: ``create_app()`` wires settings, plugins, stores, broker and routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from advanced_alchemy.config import SQLAlchemyAsyncConfig
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
from litestar.response import Redirect
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.stores.registry import StoreRegistry
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError
from taskiq import InMemoryBroker

from audioverse import __version__
from audioverse.accounts.auth import build_jwt_auth
from audioverse.accounts.controllers import AdminUsersController, AuthController, ProfileController
from audioverse.allow import list_every_allowed_method
from audioverse.api_docs import LocalSwaggerRenderPlugin
from audioverse.bodies import StrictJSONRequest
from audioverse.body_timeout import BodyIdleTimeoutMiddleware
from audioverse.catalog.controllers import (
    AudiobookController,
    AuthorController,
    GenreController,
    NarratorController,
)
from audioverse.catalog.indexing import build_search_engine, drain_outbox, rebuild_an_empty_index, search_store_for
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.catalog.search_controllers import SearchAdminController, SearchController
from audioverse.catalog.seed import DemoSeeder
from audioverse.catalog.services import SynonymService, ZeroResultService, ZeroResultTally
from audioverse.cli import AudioverseCLIPlugin
from audioverse.config import Settings
from audioverse.csp import content_security_policy
from audioverse.db import (
    ensure_data_dir,
    litestar_sqlalchemy_config,
    migrate_to_head,
    provide_db_session,
    replica_engines,
)
from audioverse.errors import problem_details_plugin
from audioverse.health import HealthController, ReadinessProbes, database_probe, email_probe, not_ready
from audioverse.job_admin import JobsController
from audioverse.jobs import SWEEP_JOBS_TASK, TaskQueue, build_broker, in_process_scheduler, send_after_commit
from audioverse.listening.controllers import (
    BookmarkController,
    LibraryController,
    ListeningController,
    PlaybackController,
    ProgressController,
    StreamController,
)
from audioverse.listening.progress_batch import ProgressSaves
from audioverse.listening.streaming import StreamDelivery
from audioverse.logs import RequestLogMiddleware, structlog_config
from audioverse.metrics import MetricsController, prometheus_config
from audioverse.notifications.controllers import (
    FollowsController,
    NotificationPreferencesController,
    UnsubscribeController,
)
from audioverse.openapi import ClosedStructSchemaPlugin, ContractDocs
from audioverse.ratelimit import RateLimiter, window_counter
from audioverse.recommendations.controllers import RecommendationAdminController, RecommendationController
from audioverse.response_cache import (
    RESPONSE_CACHE_STORE,
    ConditionalGetMiddleware,
    VersionedStore,
    bump_after_commit,
    response_cache_config,
)
from audioverse.reviews.controllers import BookReviewsController, ReviewController
from audioverse.signing import resolve_secret_key
from audioverse.stats.controllers import UserStatsController
from audioverse.storage import Storage, build_storage
from audioverse.task_registry import register_tasks
from audioverse.types import PAGE_DEPENDENCY
from audioverse.web.admin import AdminResources, admin_plugin
from audioverse.web.player import player_router
from search import SearchEngine, SearchEngineError

OPENAPI_PATH = "/api/schema"


@get("/api/docs", include_in_schema=False, cache=False)
async def docs_redirect() -> Redirect:
    """Interactive docs live with the schema; this keeps the contract's short address."""
    return Redirect(f"{OPENAPI_PATH}/swagger")


DATABASE_UNREACHABLE = (SQLAlchemyError, OSError)
"""What reading the database raises while it is down: asyncpg's refused connection surfaces unwrapped."""


def _stores(settings: Settings, redis: Redis | None, shared_store: Store) -> StoreRegistry:
    # Cached responses live beside the content version that the API processes and workers bump.
    cached_responses: dict[str, Store] = {RESPONSE_CACHE_STORE: VersionedStore(shared_store)}
    if redis is None:
        return StoreRegistry(cached_responses, default_factory=lambda _name: MemoryStore())
    root = RedisStore(redis, namespace=settings.redis_namespace, handle_client_shutdown=False)
    return StoreRegistry(cached_responses, default_factory=root.with_namespace)


async def seed_if_empty(database: SQLAlchemyAsyncConfig, storage: Storage, books: int) -> bool:
    """Seed the demo catalog into an empty database; whether it did."""
    async with database.get_session() as session:
        seeder = DemoSeeder(session, storage)
        if not await seeder.is_empty():
            return False
        logger = structlog.get_logger(__name__)
        logger.info("seeding the demo catalog", books=books)
        await seeder.seed(books)
        logger.info("demo catalog ready", books=books)
        return True


async def index_the_seed(database: SQLAlchemyAsyncConfig, search: SearchEngine, batch_size: int) -> None:
    """Load a catalog seeded at start into search before the app answers: its first search must find it.

    Left to a worker's drain, the seed reached Meilisearch about 2 s after /api/ready said ok. An engine
    that fails here leaves the rows to the drains, as any write's are when the engine is down.
    """
    try:
        drained = await drain_outbox(database, search, batch_size)
    except SearchEngineError as exc:
        structlog.get_logger(__name__).warning("the seeded catalog waits for the drain", error=str(exc))
        return
    structlog.get_logger(__name__).info("seeded catalog indexed", changes=drained)


async def configure_search(
    search: SearchEngine, database: SQLAlchemyAsyncConfig, search_store: Store
) -> SearchEngineError | None:
    """Create the indexes, apply the settings kept in code and the synonyms curated in the database.

    An index that holds no book while the catalog has some is rebuilt (:func:`rebuild_an_empty_index`).

    The engine's refusal is returned, not raised: searches answer 503 and /api/ready names the engine
    until it is back, while the rest of the service works. A database that cannot be read leaves the
    engine's synonyms as they are (Meilisearch keeps the last list it was given) and /api/ready names it.
    """
    try:
        await search.configure()
    except SearchEngineError as exc:
        return exc
    try:
        async with database.get_session() as session:
            synonyms = await SynonymService(session=session).current()
    except DATABASE_UNREACHABLE as exc:
        structlog.get_logger(__name__).warning("synonyms not loaded: the database did not answer", error=repr(exc))
        return None
    try:
        # The embedded engine keeps synonyms only in memory, so every start hands them over.
        await search.set_synonyms(synonyms.sets)
    except SearchEngineError as exc:
        return exc
    await rebuild_an_empty_index(search, database, search_store)
    return None


async def seed_and_configure_search(
    settings: Settings, database: SQLAlchemyAsyncConfig, storage: Storage, search: SearchEngine, search_store: Store
) -> SearchEngineError | None:
    """At start: seed an empty catalog if asked, configure search (:func:`configure_search`), index the seed."""
    seeded = settings.seed_demo_on_startup and await seed_if_empty(database, storage, settings.demo_books)
    unconfigured = await configure_search(search, database, search_store)
    if seeded and unconfigured is None:
        await index_the_seed(database, search, settings.search_sync_batch)
    return unconfigured


async def save_zero_results(database: SQLAlchemyAsyncConfig, tally: ZeroResultTally) -> None:
    """Write the searches that found nothing since the last write, so a stop loses none the database can take."""
    try:
        async with database.get_session() as session, session.begin():
            await ZeroResultService(session=session).add(tally.take())
    except DATABASE_UNREACHABLE as exc:
        structlog.get_logger(__name__).warning("zero-result counts lost at shutdown", error=repr(exc))


def readiness_probes(
    settings: Settings, database: SQLAlchemyAsyncConfig, storage: Storage, redis: Redis | None, search: SearchEngine
) -> ReadinessProbes:
    """What ``/api/ready`` checks: every dependency this configuration uses, with its credentials."""
    readiness = ReadinessProbes(settings.readiness_timeout_seconds)
    readiness.add("database", database_probe(database.get_engine()))
    for number, replica in enumerate(replica_engines(database), start=1):
        # A GET reads a replica: one that is down fails those requests.
        readiness.add(f"database_replica_{number}", database_probe(replica))
    readiness.add("storage", storage.check)
    if redis is not None:
        readiness.add("broker", redis.ping)
    readiness.add("search", search.health)
    if settings.email_backend == "smtp":
        readiness.add("email", email_probe(settings, settings.readiness_timeout_seconds))
    return readiness


async def start_sending_jobs(database: SQLAlchemyAsyncConfig, task_queue: TaskQueue) -> Callable[[], None]:
    """Send each job a request's transaction defers once it commits; returns the function that stops it.

    Jobs written before the hook existed (the demo seed's search drain, a command, a crash) are sent at
    once by a sweep rather than at the next minute's: a newcomer's first search finds the demo catalog.
    """
    remove_hook = send_after_commit(database, task_queue)
    try:
        await task_queue.enqueue(SWEEP_JOBS_TASK)
    except Exception as exc:  # the broker being down is /api/ready's to report; the minute's sweep runs later
        structlog.get_logger(__name__).warning("startup job sweep not sent", error=repr(exc))
    return remove_hook


def the_same(value: object) -> Provide:
    """A dependency that is ``value`` for every request."""
    return Provide(lambda: value, sync_to_thread=False, use_cache=True)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the AudioVerse application for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    ensure_data_dir(settings)
    secret_key = resolve_secret_key(settings)
    database = litestar_sqlalchemy_config(settings)
    # Requests, and the demo seed at start, write the catalog through this database's sessions.
    install_catalog_outbox(database)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    storage = build_storage(settings)
    search = build_search_engine(settings)
    search_store = search_store_for(settings)
    zero_result_tally = ZeroResultTally()
    broker = build_broker(settings)
    # An in-process broker runs tasks beside the API, so they share the app's engine and store.
    shared = isinstance(broker, InMemoryBroker)
    register_tasks(broker, settings, search=search if shared else None, search_store=search_store if shared else None)
    task_queue = TaskQueue(broker)

    jwt_auth = build_jwt_auth(secret_key, settings.access_token_minutes)
    stores = _stores(settings, redis, search_store)
    auth_rate_limiter = RateLimiter(
        # On Redis it shares the app's client, whose connections the lifespan closes on shutdown.
        window_counter(redis, prefix=f"{settings.redis_namespace}_auth-rate-limit"),
        limit=settings.auth_rate_limit,
        window_seconds=settings.auth_rate_window_seconds,
    )

    readiness = readiness_probes(settings, database, storage, redis, search)
    progress_saves = ProgressSaves(database)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.migrate_on_startup:
            await migrate_to_head(database)
        unconfigured = await seed_and_configure_search(settings, database, storage, search, search_store)
        await broker.startup()
        checks = await readiness.run()
        if unconfigured is not None and checks.get("search") == "ok":
            checks["search"] = str(unconfigured)
        if problems := not_ready(checks):
            # One line, the same words as /api/ready, so a wrong key or a missing bucket shows at start.
            structlog.get_logger(__name__).warning("not ready; /api/ready answers 503", problems=problems)
        remove_hook = await start_sending_jobs(database, task_queue)
        stop_bumping = bump_after_commit(database, search_store)
        # Everything alive now (modules, the app, its routes and schemas) lives as long as the process; left
        # to the collector, each full collection walked it all and stalled requests ~180 ms (p99 of saves).
        gc.freeze()
        try:
            async with in_process_scheduler(broker):
                yield
        finally:
            stop_bumping()
            remove_hook()
            if isinstance(broker, InMemoryBroker):
                # Let in-process tasks finish before the engine and database they write to close.
                await broker.wait_all()
            await broker.shutdown()
            await save_zero_results(database, zero_result_tally)
            await search.close()
            if redis is not None:
                await redis.aclose()

    # Requests are logged by RequestLogMiddleware around the whole app, not by Litestar's per-route middleware.
    logging_plugin = StructlogPlugin(
        StructlogConfig(structlog_logging_config=structlog_config(settings), enable_middleware_logging=False)
    )

    app = Litestar(
        route_handlers=[
            HealthController,
            docs_redirect,
            AuthController,
            ProfileController,
            UserStatsController,
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
            RecommendationController,
            RecommendationAdminController,
            JobsController,
            FollowsController,
            NotificationPreferencesController,
            UnsubscribeController,
            MetricsController,
            player_router,
        ],
        on_app_init=[jwt_auth.on_app_init],
        plugins=[
            SQLAlchemyPlugin(config=database),
            problem_details_plugin(),
            ContractDocs(jwt_auth),
            ClosedStructSchemaPlugin(),
            logging_plugin,
            AudioverseCLIPlugin(),
            admin_plugin(
                AdminResources(
                    settings=settings,
                    secret_key=secret_key,
                    database=database,
                    search=search,
                    search_store=search_store,
                    broker=broker,
                    zero_result_tally=zero_result_tally,
                    login_rate_limiter=auth_rate_limiter,
                    storage=storage,
                )
            ),
        ],
        lifespan=[lifespan],
        middleware=[
            prometheus_config().middleware,
            BodyIdleTimeoutMiddleware(settings.request_body_idle_seconds),
            ConditionalGetMiddleware(),
        ],
        response_cache_config=response_cache_config(settings.response_cache_seconds),
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
            "db_session": Provide(provide_db_session),
            "settings": the_same(settings),
            "storage": the_same(storage),
            "task_queue": the_same(task_queue),
            "auth_rate_limiter": the_same(auth_rate_limiter),
            # What handlers need from the app's lifetime, declared here and named in each signature
            # (``NamedDependency``) instead of read from ``state``.
            "search": the_same(search),
            "search_store": the_same(search_store),
            "zero_result_tally": the_same(zero_result_tally),
            "secret_key": the_same(secret_key),
            "redis": the_same(redis),
            "progress_saves": the_same(progress_saves),
            "stream_delivery": the_same(StreamDelivery(storage, settings, secret_key, database)),
            **PAGE_DEPENDENCY,
        },
        request_class=StrictJSONRequest,
        response_headers=[ResponseHeader(name="Content-Security-Policy", value=content_security_policy(settings))],
        request_max_body_size=settings.max_body_bytes,
        cors_config=CORSConfig(allow_origins=settings.cors_allow_origins) if settings.cors_allow_origins else None,
        openapi_config=OpenAPIConfig(
            title="AudioVerse API",
            version=__version__,
            description="Audiobook streaming: catalog, search, listening, reviews, recommendations.",
            path=OPENAPI_PATH,
            render_plugins=[LocalSwaggerRenderPlugin(path="/swagger"), JsonRenderPlugin()],
        ),
        debug=settings.debug,
    )
    # Route middleware never sees a request no route matches (404, 405); the request log must.
    app.asgi_handler = RequestLogMiddleware(app.asgi_handler)
    return app


__all__ = ["Storage", "create_app"]
