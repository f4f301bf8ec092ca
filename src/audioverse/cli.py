"""The ``audioverse`` command: Litestar's CLI bound to our app, plus our own commands."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

import anyio
import click
from litestar import Litestar
from litestar.cli.main import litestar_group
from litestar.plugins import CLIPlugin
from taskiq import InMemoryBroker
from taskiq.cli.scheduler.args import SchedulerArgs
from taskiq.cli.scheduler.run import run_scheduler
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import run_worker
from taskiq.exceptions import TaskiqResultTimeoutError

from audioverse.accounts.services import UserService
from audioverse.catalog.indexing import (
    REINDEX_BATCH_SIZE,
    build_search_engine,
    claim_reindex,
    reindex,
    search_store_for,
)
from audioverse.catalog.outbox import install_catalog_outbox
from audioverse.catalog.seed import DEMO_PASSWORD, DEMO_USERS, DemoSeeder
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from audioverse.errors import DomainError
from audioverse.jobs import SWEEP_JOBS_TASK, TaskQueue, build_broker
from audioverse.storage import build_storage
from search import SearchEngineError

APP_PATH = "audioverse.app:create_app"


def with_default(arguments: list[str], option: str, value: str) -> list[str]:
    """``arguments`` with ``option value`` added unless they give ``option`` already."""
    if any(argument.split("=", 1)[0] == option for argument in arguments):
        return arguments
    return [*arguments, option, value]


WORKER_GRACE_SECONDS = "20"
"""How long a worker told to stop (SIGTERM, SIGINT) lets its running tasks finish (Taskiq waits forever by default).

A task still running then is abandoned and its job sent again by the sweep (:class:`audioverse.jobs.AbandonedTasks`).
With Taskiq's 5 s for the broker's shutdown the worker is gone within Kubernetes' default 30 s; compose gives it 30 s.
"""


def worker_arguments(extra: list[str]) -> WorkerArgs:
    """``taskiq worker``'s arguments for our broker: ``extra`` from the command line, and our grace by default."""
    return WorkerArgs.from_cli(
        ["tasks.worker:broker", *with_default(extra, "--wait-tasks-timeout", WORKER_GRACE_SECONDS)]
    )


@click.command(name="worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def worker_command(ctx: click.Context) -> None:
    """Run Taskiq workers for the production profile (extra arguments go to ``taskiq worker``)."""
    raise SystemExit(run_worker(worker_arguments(list(ctx.args))))


# Delayed retries are due to the second; the scheduler reads its sources this often (Taskiq's default is a minute).
SCHEDULE_UPDATE_SECONDS = "5"


@click.command(name="scheduler", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def scheduler_command(ctx: click.Context) -> None:
    """Run the Taskiq scheduler that sends periodic jobs and delayed retries (one per deployment)."""
    extra = with_default(list(ctx.args), "--update-interval", SCHEDULE_UPDATE_SECONDS)
    asyncio.run(run_scheduler(SchedulerArgs.from_cli(["tasks.scheduler:scheduler", *extra])))


PING_TIMEOUT_SECONDS = 10.0


@click.command(name="ping")
@click.option("--worker", "needs_worker", is_flag=True, help="Also wait for a worker to run a task and answer.")
@click.option("--timeout", type=float, default=PING_TIMEOUT_SECONDS, show_default=True, help="Seconds to wait.")
def ping_command(needs_worker: bool, timeout: float) -> None:
    """Exit 0 if the task broker takes a message (and, with --worker, a worker answers it): a container healthcheck."""
    settings = Settings.from_env()

    async def ping() -> None:
        broker = build_broker(settings)
        if isinstance(broker, InMemoryBroker):
            raise click.ClickException("the embedded profile has no task broker to ping (set AUDIOVERSE_REDIS_URL)")
        await broker.startup()
        try:
            with anyio.fail_after(timeout):
                sent = await TaskQueue(broker).enqueue("system.ping")
                if needs_worker:
                    result = await sent.wait_result(timeout=timeout)
                    if result.is_err or result.return_value != "pong":
                        raise click.ClickException(f"the worker answered {result.return_value!r} ({result.error!r})")
        except (TimeoutError, TaskiqResultTimeoutError) as exc:
            raise click.ClickException(f"no answer within {timeout:g} s") from exc
        finally:
            await broker.shutdown()

    asyncio.run(ping())


@click.group(name="users")
def users_group() -> None:
    """Manage user accounts."""


@users_group.command(name="create-admin")
@click.option("--email", required=True, help="The admin's email address (marked verified).")
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Prompted when omitted.")
def create_admin_command(email: str, username: str, password: str) -> None:
    """Create a verified admin account (the first account of a fresh deployment)."""
    settings = Settings.from_env()
    database = sqlalchemy_config(settings)

    async def create() -> int:
        await migrate_to_head(database)
        async with database.get_session() as session:
            user = await UserService(session=session).create_admin(email, username, password, settings)
            await session.commit()
            user_id: int = user.id
        await database.get_engine().dispose()
        return user_id

    try:
        user_id = asyncio.run(create())
    except DomainError as exc:
        details = "; ".join(f"{error['field']}: {error['message']}" for error in exc.errors)
        raise click.ClickException(f"{exc.detail} {details}".strip()) from exc
    click.echo(f"Created admin {username!r} (id {user_id}).")


async def hand_jobs_to_workers(settings: Settings) -> None:
    """Have the workers run now the jobs a command wrote (its search drain), not at the next minute's sweep.

    A command has no after-commit sender; one sweep sends every job that is due. The embedded profile
    has no broker another process can reach: its server sweeps when it starts.
    """
    broker = build_broker(settings)
    if isinstance(broker, InMemoryBroker):
        return
    await broker.startup()
    try:
        await TaskQueue(broker).enqueue(SWEEP_JOBS_TASK)
    except Exception as exc:  # the broker down: the scheduler's sweep sends them once it is back
        click.echo(f"The workers were not told ({exc!r}); the minute's sweep will send the jobs.", err=True)
    finally:
        await broker.shutdown()


@click.command(name="seed")
@click.option(
    "--books", type=click.IntRange(min=1), default=None, help="How many books (default: AUDIOVERSE_DEMO_BOOKS)."
)
@click.option("--force", is_flag=True, help="Add the demo books even if the catalog is not empty.")
def seed_command(books: int | None, force: bool) -> None:
    """Fill the catalog with demo books (real, small, chaptered MP3s) and demo users."""
    settings = Settings.from_env()
    count = books or settings.demo_books
    database = sqlalchemy_config(settings)
    install_catalog_outbox(database)  # the seeded books reach the search index as any catalog write does

    async def seed() -> int:
        await migrate_to_head(database)
        async with database.get_session() as session:
            with click.progressbar(length=count, label="Seeding demo books") as bar:
                done = 0

                def advance(total: int) -> None:
                    nonlocal done
                    bar.update(total - done)
                    done = total

                seeder = DemoSeeder(session, build_storage(settings), progress=advance)
                if not force and not await seeder.is_empty():
                    return 0
                created = await seeder.seed(count)
        await database.get_engine().dispose()
        return created

    created = asyncio.run(seed())
    if created:
        asyncio.run(hand_jobs_to_workers(settings))
        click.echo(
            f"Added {created} demo books. Demo users: {', '.join(n for n, _ in DEMO_USERS)}; "
            f"password {DEMO_PASSWORD!r}."
        )
    else:
        click.echo("The catalog is not empty; nothing added (use --force to add anyway).")


@click.group(name="search")
def search_group() -> None:
    """Manage the search index."""


@search_group.command(name="reindex")
@click.option("--batch-size", type=click.IntRange(min=1, max=20_000), default=REINDEX_BATCH_SIZE, show_default=True)
def reindex_command(batch_size: int) -> None:
    """Rebuild the search index from the database beside the live one, then swap it in.

    Searches keep answering from the old index until the swap. With the embedded engine the
    index allows one writer, so run this while the server is stopped (or use the admin endpoint).
    """
    settings = Settings.from_env()
    database = sqlalchemy_config(settings)
    store = search_store_for(settings)

    async def rebuild() -> int:
        await migrate_to_head(database)
        engine = build_search_engine(settings)
        try:
            await engine.configure()
            async with database.get_session() as session, session.begin():
                status = await claim_reindex(store, session)
            with click.progressbar(length=1, label="Reindexing audiobooks", show_pos=True) as bar:

                def advance(processed: int, total: int) -> None:
                    bar.length = max(total, 1)
                    bar.update(processed - bar.pos)

                finished = await reindex(database, engine, store, status, batch_size=batch_size, progress=advance)
        finally:
            await engine.close()
            await database.get_engine().dispose()
        return finished.processed

    try:
        processed = asyncio.run(rebuild())
    except DomainError as exc:
        raise click.ClickException(exc.detail) from exc
    except (SearchEngineError, ValueError, OSError) as exc:
        raise click.ClickException(f"Reindex failed: {exc}") from exc
    click.echo(f"Reindexed {processed} audiobooks; the new index is live.")


def single_process_parts(settings: Settings) -> list[str]:
    """The settings still naming an embedded part, which lives in one process's memory or files."""
    parts = []
    if settings.uses_sqlite:
        parts.append("AUDIOVERSE_DATABASE_URL (PostgreSQL)")
    if settings.redis_url is None:
        parts.append("AUDIOVERSE_REDIS_URL")
    if settings.search_backend == "embedded":
        parts.append("AUDIOVERSE_SEARCH_BACKEND=meilisearch")
    return parts


def refuse_several_embedded_workers(settings: Settings, workers: int) -> None:
    """Stop ``run`` with one line when several workers would share parts that allow only one process.

    A second worker cannot open the embedded index (one writer), so its searches would fail while the
    first answers ``/api/ready``; rate limits and caches in memory would count per worker.
    """
    if workers > 1 and (missing := single_process_parts(settings)):
        raise SystemExit(
            f"audioverse run: --web-concurrency {workers} needs the production profile; the embedded one runs in "
            f"a single process (one search index writer, rate limits in memory). Set {', '.join(missing)} "
            "(README: Production profile), or run one worker."
        )


def child_processes(parent: int) -> list[int]:
    """The ids of the processes whose parent is ``parent`` (from Linux's /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid …": the command may hold spaces and parentheses, so split after the last ")".
            after_command = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(after_command[1]) == parent:
            children.append(int(stat.parent.name))
    return children


@contextmanager
def stop_signals_reach_children() -> Iterator[None]:
    """Pass SIGTERM and SIGINT on to the child processes while the block runs.

    With several workers Litestar runs uvicorn as a child process and waits for it; a SIGTERM (what an
    orchestrator sends) ended only this parent, leaving uvicorn and its workers serving, re-parented to
    PID 1, and a SIGINT made the parent kill uvicorn outright, orphaning its workers. Passed on, uvicorn
    shuts its workers down gracefully and this process returns when it has (a second SIGINT from the
    terminal's Ctrl-C, which reaches uvicorn too, only repeats the request to stop).
    """

    def pass_on(signum: int, _frame: object) -> None:
        for child in child_processes(os.getpid()):
            with suppress(ProcessLookupError):
                os.kill(child, signum)

    previous = {signum: signal.signal(signum, pass_on) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class AudioverseCLIPlugin(CLIPlugin):
    """Adds AudioVerse's commands to the Litestar command group; checks ``run``'s worker count."""

    @contextmanager
    def server_lifespan(self, app: Litestar) -> Iterator[None]:
        # Litestar's `run` enters this before it starts uvicorn; its `--web-concurrency`/`-W`/`WEB_CONCURRENCY`
        # value is the `wc` parameter of the current click context.
        context = click.get_current_context(silent=True)
        workers = (context.params.get("wc") if context else None) or 1
        refuse_several_embedded_workers(app.state.settings, workers)
        with stop_signals_reach_children() if workers > 1 else nullcontext():
            yield

    def on_cli_init(self, cli: click.Group) -> None:
        cli.add_command(worker_command)
        cli.add_command(scheduler_command)
        cli.add_command(ping_command)
        cli.add_command(users_group)
        cli.add_command(seed_command)
        cli.add_command(search_group)


def main() -> None:
    """Entry point of the ``audioverse`` console script."""
    os.environ.setdefault("LITESTAR_APP", APP_PATH)
    litestar_group()
