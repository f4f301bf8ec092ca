"""The catalog list's own database time at scale: a genre's page in each sort, its largest, middle and smallest genre.

A throwaway PostgreSQL database seeded with ``audioverse seed --books N`` (100,000 by default, about
2 minutes), vacuumed and analysed as autovacuum leaves a settled table. Then, in this process, the
service call behind ``GET /api/audiobooks/?genre=G&sort=S&limit=20`` (``AudiobookService.list_books``:
the page, its exact total and the people and genres of its books) ``--rounds`` times for each of the
largest, the middle and the smallest genre and no genre, in each sort, each time in a new session as
a request has. The response cache is not involved: this is what a miss costs. min, p50 and max in ms
(min is the least disturbed by other work on the machine) go to
``bench/results/catalog_lists.json``.

``uv run python -m bench.catalog_lists`` (about 3 minutes); ``--books 2000 --output /tmp/c.json`` to try it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from advanced_alchemy.filters import LimitOffset
from sqlalchemy import func, select, text

from audioverse.catalog.models import Genre, audiobook_genre
from audioverse.catalog.services import AudiobookService
from audioverse.config import Settings
from audioverse.db import sqlalchemy_config
from bench.common import AUDIOVERSE, audioverse_environment, fresh_postgres_database
from search.query import SearchFilters

RESULT = Path(__file__).parent / "results" / "catalog_lists.json"
SORTS = ("-average_rating", "-play_count", "-created_at", "title", "-release_date")
SEED_TIMEOUT_SECONDS = 1800


async def measure(database_url: str, rounds: int) -> dict[str, Any]:
    database = sqlalchemy_config(Settings(database_url=database_url))
    engine = database.get_engine()
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))
    async with database.get_session() as session:
        sizes = (
            await session.execute(
                select(Genre.slug, func.count(audiobook_genre.c.audiobook_id))
                .join(audiobook_genre, audiobook_genre.c.genre_id == Genre.id)
                .group_by(Genre.slug)
                .order_by(func.count(audiobook_genre.c.audiobook_id).desc())
            )
        ).all()
    genres = {
        "largest": sizes[0][0],
        "middle": sizes[len(sizes) // 2][0],
        "smallest": sizes[-1][0],
        "none": None,
    }
    results: dict[str, Any] = {}
    for which, slug in genres.items():
        for sort in SORTS:
            times: list[float] = []
            total = 0
            for _ in range(rounds):
                async with database.get_session() as session:
                    started = time.perf_counter()
                    page = await AudiobookService(session=session).list_books(
                        SearchFilters(genre=slug), sort, LimitOffset(20, 0)
                    )
                    times.append((time.perf_counter() - started) * 1000)
                    total = page.total
            results[f"{which} {sort}"] = {
                "genre": slug,
                "books_in_genre": total,
                "min_ms": round(min(times), 2),
                "p50_ms": round(statistics.median(times), 2),
                "max_ms": round(max(times), 2),
            }
            print(
                f"{which:8} {slug or '-':15} {sort:16} total {total:7}  "
                f"min {min(times):7.2f}  p50 {statistics.median(times):7.2f} ms"
            )
    await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    with fresh_postgres_database() as database_url, tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [AUDIOVERSE, "seed", "--books", str(args.books)],
            env=audioverse_environment(
                Path(scratch) / "var", database_url=database_url, secret_key=secrets.token_urlsafe(48)
            ),
            capture_output=True,
            timeout=SEED_TIMEOUT_SECONDS,
            check=True,
        )
        results = asyncio.run(measure(database_url, args.rounds))
    args.output.write_text(
        json.dumps(
            {
                "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "books": args.books,
                "rounds": args.rounds,
                "lists": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
