"""Latency of the recommendation routes from the cache, through the real service over HTTP.

Starts ``audioverse run`` (embedded profile) on a fresh data directory that seeds the demo catalog
and its listening histories on first start; the seed's rebuild fills the cache. Then times
``--rounds`` requests of each: ``demo_listener``'s shelf, the anonymous shelf, a genre shelf, and
a book's similar list; writes p50/p95/p99 to ``bench/results/recommendations_api.json``.

``uv run python -m bench.recommendations_api`` (the 200-book demo catalog, about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from audioverse.catalog.seed import DEMO_PASSWORD
from bench.common import login, running_service
from bench.recommendations import RESULTS

REBUILD_WAIT_SECONDS = 120


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100)
    return {"p50_ms": round(cut[49] * 1000, 2), "p95_ms": round(cut[94] * 1000, 2), "p99_ms": round(cut[98] * 1000, 2)}


Request = tuple[str, dict[str, str]]
"""A path (with its query) and the headers to send it with."""


def wait_for_rebuild(client: httpx.Client, curator: dict[str, str], seconds: float = REBUILD_WAIT_SECONDS) -> Any:
    """The rebuild status the API reports, once it reads ``succeeded`` (or after ``seconds``)."""
    deadline = time.monotonic() + seconds
    status = client.get("/api/admin/recommendations/status/", headers=curator).json()
    while status["state"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.get("/api/admin/recommendations/status/", headers=curator).json()
    return status


def request_seconds(client: httpx.Client, path: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    client.get(path, headers=headers).raise_for_status()
    return time.perf_counter() - started


def time_routes(client: httpx.Client, routes: dict[str, list[Request]], rounds: int) -> dict[str, list[float]]:
    """Each route ``rounds`` times, one request after the other, cycling through its variants.

    One untimed request per variant first (the cache of the model is warm after a rebuild; this warms
    the connection and the route's first use).
    """
    samples: dict[str, list[float]] = {}
    for name, variants in routes.items():
        for path, headers in variants:
            client.get(path, headers=headers).raise_for_status()
        samples[name] = [request_seconds(client, *variants[i % len(variants)]) for i in range(rounds)]
        print(name, percentiles(samples[name]), flush=True)
    return samples


def health_samples(client: httpx.Client, rounds: int) -> list[float]:
    return [request_seconds(client, "/api/health", {}) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--output", type=Path, default=RESULTS / "recommendations_api.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch:
        settings = {"seed_demo_on_startup": "true", "demo_books": str(args.books)}
        with running_service(Path(scratch), **settings) as (base, _process):
            curator = login(base, "demo_curator", DEMO_PASSWORD)
            listener = login(base, "demo_listener", DEMO_PASSWORD)
            with httpx.Client(base_url=base, timeout=30) as client:
                status = wait_for_rebuild(client, curator)
                genre = client.get("/api/genres/").json()[0]["slug"]
                book = client.get("/api/audiobooks/", params={"limit": 1}).json()["items"][0]["id"]
                routes: dict[str, list[Request]] = {
                    "recommended_demo_listener": [("/api/audiobooks/recommended/", listener)],
                    "recommended_anonymous": [("/api/audiobooks/recommended/", {})],
                    "recommended_genre_demo_listener": [(f"/api/audiobooks/recommended/?genre={genre}", listener)],
                    "similar_anonymous": [(f"/api/audiobooks/{book}/similar/", {})],
                }
                measured = {
                    name: percentiles(samples) for name, samples in time_routes(client, routes, args.rounds).items()
                }
                health = health_samples(client, args.rounds)
    result = {
        "benchmark": "recommendations_api",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "books": args.books,
        "rounds": args.rounds,
        "rebuild": status,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "routes": measured,
        "health_for_comparison": percentiles(health),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
