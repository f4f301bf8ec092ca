"""The model build at scale: 100,000 books x 20,000 listeners x 1,000,000 ledger rows, time and peak RSS.

Runs the worker's own ``compute`` (signals -> interaction matrix -> item-item CF -> content
similarity -> popularity -> every listener's 100 picks and every book's neighbours) on synthetic
data from ``bench.recommendations`` (the same structure as the evaluation), then writes every list
into a memory store as the rebuild does, and times shelf reads from that store (the cache path of
the API, without HTTP and the database). The build runs in a child process so its peak RSS is its
own, not the data generator's. Reading the signals from the database is not in the build time.

``uv run python -m bench.recommendations_scale`` (the goal size) or ``--books 10000 --users 2000
--events 100000`` to try; writes ``bench/results/recommendations_scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from litestar.stores.memory import MemoryStore

from audioverse.recommendations.schemas import ModelVersion, Pick, Shelf
from audioverse.recommendations.services import Catalog, RecommendationCache, compute
from bench.recommendations import RESULTS, make_catalog, make_events, signals_from


def build(args: argparse.Namespace, out: Any) -> None:
    rng = np.random.default_rng(args.seed)
    catalog = make_catalog(args.books, args.tastes, args.genres, rng)
    events = make_events(catalog, args.users, args.events, rng)
    signals = signals_from(events, np.ones(len(events.users), dtype=bool), float(events.day.max() + 1))
    plays = rng.integers(0, 1000, args.books).tolist()
    del events
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    built = compute(signals, Catalog(catalog.features, plays))
    build_seconds = time.perf_counter() - started

    async def write_and_read() -> dict[str, float]:
        cache = RecommendationCache(MemoryStore())
        now = datetime.now(UTC)
        version = ModelVersion(version="bench", generated_at=now)
        started = time.perf_counter()
        entries = [(f"b{book}", Shelf(now, picks)) for book, picks in built.books.items()]
        entries += [(f"u{user}", Shelf(now, picks)) for user, picks in built.users.items()]
        entries.append(("popular", Shelf(now, [Pick(book) for book in built.popular])))
        await cache.put(version.version, entries)
        await cache.swap(version)
        write_seconds = time.perf_counter() - started
        users = list(built.users)
        timings = []
        for user in users[:2000]:
            tick = time.perf_counter()
            current = await cache.version()
            await cache.user(current, user)
            timings.append(time.perf_counter() - tick)
        return {
            "store_write_seconds": round(write_seconds, 2),
            "cached_shelf_read_p95_ms": round(float(np.percentile(timings, 95)) * 1000, 3),
        }

    store = asyncio.run(write_and_read())
    out.put(
        {
            "build_seconds": round(build_seconds, 2),
            "rss_before_build_mib": round(before / 2**20, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "listeners_with_lists": len(built.users),
            "books_with_neighbours": len(built.books),
            "interaction_cells": built.interactions,
            **store,
        }
    )


def add_scale_arguments(parser: argparse.ArgumentParser) -> None:
    """The synthetic data's size and shape, the goal size by default (shared with the route bench)."""
    parser.add_argument("--books", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tastes", type=int, default=400)
    parser.add_argument("--genres", type=int, default=40)
    parser.add_argument("--seed", type=int, default=13)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scale_arguments(parser)
    parser.add_argument("--output", type=Path, default=RESULTS / "recommendations_scale.json")
    args = parser.parse_args()
    queue: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=build, args=(args, queue))
    child.start()
    measured = queue.get()
    child.join()
    result = {
        "benchmark": "recommendations_scale",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": {"books": args.books, "users": args.users, "ledger_rows_requested": args.events},
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "measured": measured,
        "goals": {"build_seconds_max": 120, "peak_rss_mib_max": 2048},
        "peak_rss_note": "ru_maxrss of the child, which also generated the data (an upper bound of the build's)",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
