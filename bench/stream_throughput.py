"""Benchmark: audio streaming through the app against nginx serving the same file, and the app's RSS.

Run: uv run python bench/stream_throughput.py [--mib 1024]. Writes bench/results/stream_throughput.json.
Goals: memory per stream stays flat (RSS growth small and independent of the file size); the ratio
to nginx is recorded, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from audioverse.catalog.models import Audiobook
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from bench.common import ROOT, RssSampler, create_admin, login, rss_bytes, running_service
from tests.listening.nginx import run_nginx

MIB = 1024 * 1024
RANGE_REQUESTS = 200


def download(url: str, headers: dict[str, str]) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    with httpx.stream("GET", url, headers=headers, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(1024 * 1024):
            total += len(chunk)
    return total, time.perf_counter() - started


def ranged(url: str, headers: dict[str, str], size: int) -> float:
    rng = random.Random(1)
    started = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        for _ in range(RANGE_REQUESTS):
            start = rng.randrange(0, size - MIB)
            response = client.get(url, headers={**headers, "Range": f"bytes={start}-{start + MIB - 1}"})
            assert response.status_code == 206
    return time.perf_counter() - started


async def add_book(settings: Settings, key: str, size: int) -> int:
    database = sqlalchemy_config(settings)
    await migrate_to_head(database)
    async with database.get_session() as session:
        book = Audiobook(
            title="Benchmark", duration_seconds=3600, language="en", format="mp3", mime_type="audio/mpeg",
            size_bytes=size, bitrate=0, audio_key=key, average_rating=Decimal("0"),
        )  # fmt: skip
        session.add(book)
        await session.commit()
        book_id = book.id
    await database.get_engine().dispose()
    return book_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch:
        root = Path(scratch)
        data_dir = root / "var"
        key = "audiobooks/bench/audio.mp3"
        audio = data_dir / "storage" / key
        audio.parent.mkdir(parents=True)
        with audio.open("wb") as handle:
            for _ in range(args.mib):
                handle.write(os.urandom(MIB))
        size = audio.stat().st_size
        book_id = asyncio.run(add_book(Settings(data_dir=data_dir), key, size))
        with run_nginx(audio.parent, root / "nginx") as nginx:
            nginx_url = f"{nginx.url}/audio.mp3"
            download(nginx_url, {})  # warm the page cache
            _, nginx_seconds = min((download(nginx_url, {}) for _ in range(3)), key=lambda r: r[1])
            nginx_ranged = ranged(nginx_url, {}, size)
        with running_service(data_dir) as (base, process):
            headers = login(base, *create_admin(data_dir))
            url = f"{base}/api/audiobooks/{book_id}/stream/"
            baseline = rss_bytes(process.pid)
            with RssSampler(process.pid) as sampler:
                runs = [download(url, headers) for _ in range(3)]
            received, app_seconds = min(runs, key=lambda r: r[1])
            app_ranged = ranged(url, headers, size)
    assert received == size
    result = {
        "file_mib": args.mib,
        "nginx_mib_s": round(size / MIB / nginx_seconds, 1),
        "app_mib_s": round(size / MIB / app_seconds, 1),
        "app_to_nginx_ratio": round(nginx_seconds / app_seconds, 3),
        "nginx_ranged_1mib_requests_per_s": round(RANGE_REQUESTS / nginx_ranged, 1),
        "app_ranged_1mib_requests_per_s": round(RANGE_REQUESTS / app_ranged, 1),
        "app_rss_baseline_mib": round(baseline / MIB, 1),
        "app_rss_peak_while_streaming_mib": round(sampler.peak / MIB, 1),
        "app_rss_growth_mib": round((sampler.peak - baseline) / MIB, 1),
    }
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "stream_throughput.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
