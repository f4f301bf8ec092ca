"""How long a write takes to reach search, through the real service on both profiles (issue 14: within 2 s).

For each profile: a first start that seeds the demo catalog (seconds from ``/api/ready`` until a seeded
title is found), then ``--writes`` uploads (seconds from the 201 until the new title is found) and as
many title edits (from the 200 until the new title is found). Searches poll every 10 ms with a new
address each time, so no cached answer hides the index. The production profile runs PostgreSQL,
Redis, Meilisearch, a worker and the scheduler, as ``docker-compose.yml`` does.

    uv run python -m bench.search_freshness --output bench/results/search_freshness.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from anyio.from_thread import start_blocking_portal

from bench.common import (
    AUDIOVERSE,
    ROOT,
    create_admin,
    fresh_postgres_database,
    login,
    production_settings,
    running_service,
)
from tests import services
from tests.services import run_meilisearch, stop_process

RESULT_PATH = ROOT / "bench" / "results" / "search_freshness.json"
GOAL_SECONDS = 2.0
POLL_SECONDS = 0.01
GIVE_UP_SECONDS = 120.0
DEMO_BOOKS = 200
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:8.1f}s] {message}", flush=True)


def silent_wav() -> bytes:
    """One second of silence: a valid upload the service reads the duration of."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x00" * 8000)
    return buffer.getvalue()


def seconds_until_found(base: str, title: str, book_id: int | None = None) -> float:
    """Seconds from now until searching ``title`` finds it (``book_id`` among the hits, if given)."""
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=10) as client:
        for attempt in range(int(GIVE_UP_SECONDS / POLL_SECONDS)):
            # A new address each time: the response cache must not answer from before the write.
            hits = client.get("/api/audiobooks/search/", params={"q": title, "limit": 5, "attempt": attempt})
            items = hits.json()["items"] if hits.status_code == 200 else []
            if any(item["title"] == title and book_id in (None, item["id"]) for item in items):
                return time.monotonic() - started
            time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{title!r} was not searchable within {GIVE_UP_SECONDS:g} s")


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "max_s": round(ordered[-1], 3),
        "within_goal": sum(1 for sample in ordered if sample <= GOAL_SECONDS),
    }


def measure(base: str, admin: tuple[str, str], writes: int) -> dict[str, Any]:
    """After a first start that seeded the demo catalog: the seed, then uploads and edits, each until found."""
    first_title = httpx.get(f"{base}/api/audiobooks/", params={"sort": "title", "limit": 1}).json()["items"][0]["title"]
    first_start = seconds_until_found(base, first_title)
    log(f"first start: a seeded title found {first_start:.3f} s after /api/ready")
    headers = login(base, *admin)
    audio = silent_wav()
    uploads: list[float] = []
    edits: list[float] = []
    for n in range(writes):
        title = f"Freshness {secrets.token_hex(4)}"
        created = httpx.post(
            f"{base}/api/audiobooks/", headers=headers, data={"title": title, "authors": "Bench Writer"},
            files={"audio": ("fresh.wav", audio, "audio/wav")}, timeout=30,
        )  # fmt: skip
        if created.status_code != 201:
            raise RuntimeError(f"upload refused: {created.status_code} {created.text[:300]}")
        book_id = created.json()["id"]
        uploads.append(seconds_until_found(base, title, book_id))
        renamed = f"Renamed {secrets.token_hex(4)}"
        edited = httpx.patch(f"{base}/api/audiobooks/{book_id}/", headers=headers, json={"title": renamed})
        if edited.status_code != 200:
            raise RuntimeError(f"edit refused: {edited.status_code} {edited.text[:300]}")
        edits.append(seconds_until_found(base, renamed, book_id))
        log(f"write {n + 1}/{writes}: upload {uploads[-1]:.3f} s, edit {edits[-1]:.3f} s")
    return {
        "first_start_seconds_after_ready": round(first_start, 3),
        "upload": summary(uploads),
        "edit": summary(edits),
    }


@contextmanager
def background(data_dir: Path, environment: dict[str, str], *command: str) -> Iterator[subprocess.Popen[bytes]]:
    with (data_dir / f"{command[0]}.log").open("wb") as output:
        process = subprocess.Popen([AUDIOVERSE, *command], env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, 30)


def embedded(scratch: Path, writes: int) -> dict[str, Any]:
    data_dir = scratch / "embedded"
    admin = create_admin(data_dir)
    with running_service(data_dir, seed_demo_on_startup="true", demo_books=str(DEMO_BOOKS)) as (base, _process):
        return measure(base, admin, writes)


def production(scratch: Path, writes: int) -> dict[str, Any]:
    data_dir = scratch / "production"
    data_dir.mkdir()
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database())
        portal = stack.enter_context(start_blocking_portal())
        namespace = stack.enter_context(portal.wrap_async_context_manager(services.fresh_redis_namespace()))
        meilisearch = stack.enter_context(run_meilisearch(scratch))
        settings = production_settings(database_url, namespace, meilisearch, namespace.replace("-", "_"))
        environment = {
            **os.environ,
            "AUDIOVERSE_DATA_DIR": str(data_dir),
            "AUDIOVERSE_LOG_LEVEL": "WARNING",
            **{f"AUDIOVERSE_{name.upper()}": value for name, value in settings.items()},
        }
        subprocess.run(
            [AUDIOVERSE, "users", "create-admin", "--email", "bench@bench.local", "--username", "bench",
             "--password", "benchmark password 1"],
            env=environment, check=True, capture_output=True,
        )  # fmt: skip
        stack.enter_context(background(data_dir, environment, "worker", "--workers", "1"))
        stack.enter_context(background(data_dir, environment, "scheduler"))
        subprocess.run([AUDIOVERSE, "ping", "--worker"], env=environment, check=True, capture_output=True, timeout=120)
        base, _process = stack.enter_context(
            running_service(data_dir, **settings, seed_demo_on_startup="true", demo_books=str(DEMO_BOOKS))
        )
        return measure(base, ("bench", "benchmark password 1"), writes)


PROFILES: dict[str, Callable[[Path, int], dict[str, Any]]] = {"embedded": embedded, "production": production}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20, help="uploads (and as many edits) per profile")
    parser.add_argument("--output", type=Path, default=RESULT_PATH)
    args = parser.parse_args()
    if args.writes < 1:
        parser.error("--writes must be at least 1")
    result: dict[str, Any] = {
        "benchmark": "search_freshness",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "goal_seconds": GOAL_SECONDS,
        "poll_seconds": POLL_SECONDS,
        "demo_books": DEMO_BOOKS,
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-freshness-") as scratch_name:
        for name, run in PROFILES.items():
            log(f"{name} profile")
            profile_dir = Path(scratch_name) / name
            profile_dir.mkdir()
            result[name] = run(profile_dir, args.writes)
    result["wall_seconds"] = round(time.monotonic() - STARTED, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({name: result[name] for name in PROFILES}, indent=2))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
