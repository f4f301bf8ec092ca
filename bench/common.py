"""Shared benchmark plumbing: the real service, Meilisearch and a fresh database, and memory sampling."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from anyio.from_thread import start_blocking_portal

from tests import services
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[1]
AUDIOVERSE = str(Path(sys.executable).parent / "audioverse")
SERVICE_START_SECONDS = 60


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples a process's resident memory every few milliseconds in a background thread."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_bytes(self.pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


def audioverse_environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of an ``audioverse`` command: ``settings`` as ``AUDIOVERSE_*``, no demo seeding on start."""
    return {
        **os.environ,
        "AUDIOVERSE_DATA_DIR": str(data_dir),
        "AUDIOVERSE_SEED_DEMO_ON_STARTUP": "false",
        "AUDIOVERSE_LOG_LEVEL": "WARNING",
        **{f"AUDIOVERSE_{name.upper()}": value for name, value in settings.items()},
    }


STOP_SECONDS = 30


@contextmanager
def running_service(
    data_dir: Path, *run_options: str, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``audioverse run [run_options]`` (embedded profile unless settings say otherwise) on a free port, once ready."""
    port = free_port()
    environment = audioverse_environment(data_dir, **settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "service.log"
    with log_path.open("wb") as service_log:
        process = subprocess.Popen(
            [AUDIOVERSE, "run", "--port", str(port), *run_options],
            env=environment,
            stdout=service_log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # What it was still doing is in its log; the measurements taken meanwhile stand.
            tail = log_path.read_text(errors="replace").splitlines()[-20:]
            print(f"audioverse run did not stop within {STOP_SECONDS} s; killed. Its last lines:", *tail, sep="\n")
            process.kill()
            process.wait()


def create_admin(data_dir: Path, username: str = "bench", password: str = "benchmark password 1") -> tuple[str, str]:
    environment = {**os.environ, "AUDIOVERSE_DATA_DIR": str(data_dir)}
    subprocess.run(
        [
            AUDIOVERSE,
            "users",
            "create-admin",
            "--email",
            f"{username}@bench.local",
            "--username",
            username,
            "--password",
            password,
        ],
        env=environment,
        check=True,
        capture_output=True,
    )
    return username, password


def login(base: str, username: str, password: str) -> dict[str, str]:
    tokens = httpx.post(f"{base}/api/auth/login/", json={"username_or_email": username, "password": password}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def wait_until_ready(base: str, seconds: float = SERVICE_START_SECONDS) -> None:
    """Wait for ``GET /api/ready`` to answer 200 (every dependency, the search engine included)."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{base}/api/ready", timeout=5)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        time.sleep(0.2)
    raise RuntimeError(f"{base}/api/ready did not answer 200 within {seconds:g}s: {last}")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The test suite's throwaway PostgreSQL database, entered from synchronous benchmark code."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(services.fresh_postgres_database()) as database_url,
    ):
        yield database_url


def production_settings(
    database_url: str, namespace: str, meilisearch: services.MeilisearchServer, index: str
) -> dict[str, str]:
    """The production profile on the benches' services: PostgreSQL, Redis under ``namespace``, Meilisearch."""
    return {
        "database_url": database_url,
        "redis_url": services.REDIS_URL,
        "redis_retries_url": services.REDIS_RETRIES_URL,
        "redis_namespace": namespace,
        "task_queue_name": f"{namespace}:tasks",
        "search_backend": "meilisearch",
        "meilisearch_url": meilisearch.url,
        "meilisearch_api_key": meilisearch.master_key,
        "search_index": index,
        "secret_key": secrets.token_urlsafe(48),
    }
