"""The `audioverse` command: Litestar's CLI with our app, migrations, worker; `run` serves for real."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from audioverse.cli import child_processes, single_process_parts
from audioverse.config import Settings
from search.embedded import EmbeddedSearchEngine
from tests.services import TEST_HASHING, TEST_SECRET_KEY, Deployment, free_port, settings_environment

AUDIOVERSE = str(Path(sys.executable).parent / "audioverse")
# Well inside the minute after which the scheduler's sweep would send the seed's drain anyway.
SEEDED_SEARCHABLE_SECONDS = 10


def run_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "AUDIOVERSE_DATA_DIR": str(data_dir),
        "AUDIOVERSE_PASSWORD_HASH_PROFILE": TEST_HASHING,
        **(env or {}),
    }
    return subprocess.run(
        [AUDIOVERSE, *args], capture_output=True, text=True, env=environment, timeout=120, check=False
    )


def test_help_lists_our_commands(tmp_path: Path) -> None:
    result = run_cli("--help", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("run", "database", "worker", "scheduler", "ping", "routes", "search", "seed", "users"):
        assert command in result.stdout


def test_database_upgrade_and_downgrade(tmp_path: Path) -> None:
    upgrade = run_cli("database", "upgrade", "--no-prompt", data_dir=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr + upgrade.stdout
    assert (tmp_path / "audioverse.db").exists()
    downgrade = run_cli("database", "downgrade", "base", "--no-prompt", data_dir=tmp_path)
    assert downgrade.returncode == 0, downgrade.stderr + downgrade.stdout


@pytest.mark.slow
def test_run_serves_the_api_on_the_given_port(tmp_path: Path) -> None:
    port = free_port()
    environment = {**os.environ, "AUDIOVERSE_DATA_DIR": str(tmp_path / "var")}
    process = subprocess.Popen(
        [AUDIOVERSE, "run", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None, "the service did not start"
        assert ready.status_code == 200
        assert (tmp_path / "var" / "audioverse.db").exists()
        # An empty catalog is seeded with the demo books on first start.
        books = httpx.get(f"http://127.0.0.1:{port}/api/audiobooks/", params={"limit": 1}, timeout=5).json()
        assert books["total"] == 200
        detail = httpx.get(f"http://127.0.0.1:{port}/api/audiobooks/{books['items'][0]['id']}/", timeout=5).json()
        assert len(detail["chapters"]) >= 3
        assert detail["authors"]
        # A scrape from this machine needs no token; the job gauges name the scheduled jobs.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "audioverse_requests_total" in metrics.text
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_create_admin_then_refuses_a_duplicate(tmp_path: Path) -> None:
    arguments = ("users", "create-admin", "--email", "Root@Example.com", "--username", "root")
    created = run_cli(*arguments, "--password", "a long admin passphrase", data_dir=tmp_path)
    assert created.returncode == 0, created.stderr + created.stdout
    assert "Created admin 'root'" in created.stdout
    duplicate = run_cli(*arguments, "--password", "a long admin passphrase", data_dir=tmp_path)
    assert duplicate.returncode != 0
    assert "already" in duplicate.stdout + duplicate.stderr
    weak = run_cli(
        "users",
        "create-admin",
        "--email",
        "x@example.com",
        "--username",
        "x1",
        "--password",
        "short",
        data_dir=tmp_path,
    )
    assert weak.returncode != 0
    assert "too weak" in weak.stdout + weak.stderr


def test_seed_adds_books_only_to_an_empty_catalog(tmp_path: Path) -> None:
    seeded = run_cli("seed", "--books", "3", data_dir=tmp_path)
    assert seeded.returncode == 0, seeded.stderr + seeded.stdout
    assert "Added 3 demo books" in seeded.stdout
    again = run_cli("seed", "--books", "3", data_dir=tmp_path)
    assert "not empty" in again.stdout
    forced = run_cli("seed", "--books", "2", "--force", data_dir=tmp_path)
    assert "Added 2 demo books" in forced.stdout


def test_search_reindex_rebuilds_the_index_from_the_database(tmp_path: Path) -> None:
    assert run_cli("seed", "--books", "12", data_dir=tmp_path).returncode == 0
    shutil.rmtree(Settings(data_dir=tmp_path).resolved_search_dir, ignore_errors=True)  # an index lost or stale

    result = run_cli("search", "reindex", "--batch-size", "5", data_dir=tmp_path)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "Reindexed 12 audiobooks" in result.stdout
    engine = EmbeddedSearchEngine(Settings(data_dir=tmp_path).resolved_search_dir)
    try:
        assert asyncio.run(engine.count()) == 12
    finally:
        asyncio.run(engine.close())


def test_search_reindex_refuses_while_a_server_holds_the_embedded_index(tmp_path: Path) -> None:
    assert run_cli("seed", "--books", "2", data_dir=tmp_path).returncode == 0
    holder = EmbeddedSearchEngine(Settings(data_dir=tmp_path).resolved_search_dir)

    async def hold_and_reindex() -> subprocess.CompletedProcess[str]:
        await holder.configure()
        try:
            return run_cli("search", "reindex", data_dir=tmp_path)
        finally:
            await holder.close()

    result = asyncio.run(hold_and_reindex())

    assert result.returncode == 1
    message = " ".join(result.stderr.replace("│", " ").split())  # the error box wraps lines
    assert "is in use by another engine (the embedded profile runs in one process)" in message


EMBEDDED_REFUSAL = (
    "Set AUDIOVERSE_DATABASE_URL (PostgreSQL), AUDIOVERSE_REDIS_URL, AUDIOVERSE_SEARCH_BACKEND=meilisearch "
    "(README: Production profile), or run one worker."
)


@pytest.mark.parametrize(
    ("arguments", "env"),
    [
        (["--web-concurrency", "2"], {}),
        (["-W", "2"], {}),
        ([], {"WEB_CONCURRENCY": "2"}),
        ([], {"LITESTAR_WEB_CONCURRENCY": "2"}),
    ],
    ids=["--web-concurrency", "-W", "WEB_CONCURRENCY", "LITESTAR_WEB_CONCURRENCY"],
)
def test_run_refuses_several_workers_on_the_embedded_profile(
    tmp_path: Path, arguments: list[str], env: dict[str, str]
) -> None:
    port = free_port()
    result = run_cli("run", "--port", str(port), *arguments, data_dir=tmp_path, env=env)

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("audioverse run: --web-concurrency 2 needs the production profile")
    assert lines[0].endswith(EMBEDDED_REFUSAL)
    assert "Traceback" not in result.stdout + result.stderr
    with pytest.raises(httpx.TransportError):  # nothing was started
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)


def test_run_names_only_the_parts_still_embedded(tmp_path: Path) -> None:
    production_but_search = {
        "AUDIOVERSE_DATABASE_URL": "postgresql+asyncpg://audioverse@127.0.0.1:5432/audioverse",
        "AUDIOVERSE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AUDIOVERSE_SECRET_KEY": TEST_SECRET_KEY,
    }
    result = run_cli("run", "--port", str(free_port()), "-W", "2", data_dir=tmp_path, env=production_but_search)

    assert result.returncode == 1
    assert "Set AUDIOVERSE_SEARCH_BACKEND=meilisearch (README" in result.stderr
    assert "AUDIOVERSE_REDIS_URL" not in result.stderr


def test_the_production_profile_has_no_single_process_part() -> None:
    production = Settings(
        database_url="postgresql+asyncpg://audioverse@127.0.0.1:5432/audioverse",
        redis_url="redis://127.0.0.1:6379/0",
        search_backend="meilisearch",
    )
    assert single_process_parts(production) == []
    assert single_process_parts(Settings()) != []


def test_ping_answers_when_a_worker_runs_the_task(production_deployment: Deployment, tmp_path: Path) -> None:
    environment = settings_environment(production_deployment.settings)
    result = run_cli("ping", "--worker", "--timeout", "20", data_dir=tmp_path, env=environment)
    assert result.returncode == 0, result.stderr + result.stdout


def test_ping_fails_when_the_broker_is_unreachable_or_absent(tmp_path: Path) -> None:
    unreachable = {
        "AUDIOVERSE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "AUDIOVERSE_SECRET_KEY": TEST_SECRET_KEY,
    }
    result = run_cli("ping", "--timeout", "3", data_dir=tmp_path, env=unreachable)
    assert result.returncode != 0
    embedded = run_cli("ping", data_dir=tmp_path)
    assert embedded.returncode != 0
    assert "embedded profile has no task broker" in embedded.stderr


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie, state Z, only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_run_with_several_workers_stops_every_server_process(
    production_search_deployment: Deployment, tmp_path: Path, stop: signal.Signals
) -> None:
    port = free_port()
    environment = {
        **os.environ,
        **settings_environment(production_search_deployment.settings),
        "AUDIOVERSE_DATA_DIR": str(tmp_path / "var"),
    }
    process = subprocess.Popen(
        [AUDIOVERSE, "run", "--port", str(port), "--web-concurrency", "2"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server: list[int] = []
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        server = child_processes(process.pid)
        assert server, "litestar runs uvicorn as a child process with several workers"
        workers = [worker for master in server for worker in child_processes(master)]
        assert len(workers) >= 2
        process.send_signal(stop)
        assert process.wait(timeout=60) is not None
        # Nothing left serving, re-parented to PID 1 (an exited process that no one reaped holds nothing).
        assert [pid for pid in server + workers if running(pid)] == []
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in server + workers:  # left running only if the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.search
async def test_books_seeded_by_the_command_are_searchable_within_seconds(
    production_search_deployment: Deployment,
) -> None:
    """The seed command's search drain goes to the workers at once, not at the scheduler's next minute."""
    environment = {**os.environ, **settings_environment(production_search_deployment.settings)}
    seeded = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [AUDIOVERSE, "seed", "--books", "3", "--force"], env=environment, capture_output=True, check=False
        )
    )
    assert seeded.returncode == 0, seeded.stderr.decode()
    client = production_search_deployment.client
    titles = [book["title"] for book in (await client.get("/api/audiobooks/", params={"limit": 3})).json()["items"]]
    assert len(titles) == 3

    async def found() -> list[str]:
        page = (await client.get("/api/audiobooks/search/", params={"q": titles[0]})).json()
        return [item["title"] for item in page["items"]]

    with anyio.fail_after(SEEDED_SEARCHABLE_SECONDS):
        while titles[0] not in await found():  # noqa: ASYNC110 - polling the worker
            await anyio.sleep(0.2)
