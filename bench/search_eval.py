"""Benchmark: how often the API finds the book a listener means, on real typo'd and loose queries.

Each profile's ``audioverse run`` seeds the demo catalog on its first start (the 360 real titles and,
with ``--books`` above 360, their numbered "Volume N" copies, which must not crowd the originals
out), then every query of ``tests/search/eval_queries.json`` goes to ``GET /api/audiobooks/search/``
as a client sends it. A query counts as found at 1 or 3 when its intended title is first or among
the first three hits. Writes the rates, per kind, and every miss to ``bench/results/search_eval.json``.

``uv run python -m bench.search_eval`` (about a minute per engine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, running_service
from tests.services import run_meilisearch

QUERIES = ROOT / "tests" / "search" / "eval_queries.json"
RESULT_PATH = ROOT / "bench" / "results" / "search_eval.json"
TOP = 3
SEARCHABLE_SECONDS = 120


def load_queries() -> list[dict[str, str]]:
    queries: list[dict[str, str]] = json.loads(QUERIES.read_text())
    return queries


def wait_until_searchable(client: httpx.Client, books: int) -> float:
    """Seconds until the whole seeded catalog is in the index (the first start indexes it)."""
    started = time.monotonic()
    while time.monotonic() - started < SEARCHABLE_SECONDS:
        found = client.get("/api/audiobooks/search/", params={"limit": 1})
        if found.status_code == 200 and found.json()["total"] >= books:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"the catalog of {books} books was not searchable within {SEARCHABLE_SECONDS} s")


def evaluate(base: str, queries: list[dict[str, str]], books: int) -> dict[str, Any]:
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    misses: list[dict[str, Any]] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        searchable_after = wait_until_searchable(client, books)
        for query in queries:
            answer = client.get("/api/audiobooks/search/", params={"q": query["query"], "limit": TOP})
            answer.raise_for_status()
            titles = [item["title"] for item in answer.json()["items"]]
            counts = by_kind[query["kind"]]
            counts[0] += 1
            counts[1] += bool(titles) and titles[0] == query["expect"]
            counts[2] += query["expect"] in titles
            if query["expect"] not in titles:
                misses.append({**query, "top": titles})
    total = sum(counts[0] for counts in by_kind.values())
    return {
        "searchable_after_start_seconds": round(searchable_after, 1),
        "queries": total,
        "top_1": round(sum(counts[1] for counts in by_kind.values()) / total, 4),
        f"top_{TOP}": round(sum(counts[2] for counts in by_kind.values()) / total, 4),
        "by_kind": {
            kind: {
                "queries": counts[0],
                "top_1": round(counts[1] / counts[0], 4),
                f"top_{TOP}": round(counts[2] / counts[0], 4),
            }
            for kind, counts in sorted(by_kind.items())
        },
        "misses": misses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--books", type=int, default=720, help="books the demo seed adds (360 real titles, then volumes)"
    )
    parser.add_argument(
        "--engines", nargs="+", choices=["embedded", "meilisearch"], default=["embedded", "meilisearch"]
    )
    parser.add_argument("--output", type=Path, default=RESULT_PATH)
    args = parser.parse_args()
    queries = load_queries()
    seeded = {"seed_demo_on_startup": "true", "demo_books": str(args.books)}
    engines: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch:
        if "embedded" in args.engines:
            with running_service(Path(scratch) / "embedded", **seeded) as (base, _process):
                engines["embedded"] = evaluate(base, queries, args.books)
        if "meilisearch" in args.engines:
            with (
                run_meilisearch(Path(scratch)) as meilisearch,
                running_service(
                    Path(scratch) / "meilisearch",
                    search_backend="meilisearch",
                    meilisearch_url=meilisearch.url,
                    meilisearch_api_key=meilisearch.master_key,
                    **seeded,
                ) as (base, _process),
            ):
                engines["meilisearch"] = evaluate(base, queries, args.books)
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    result = {
        "benchmark": "search_eval",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "catalog": {"books": args.books, "real_titles": 360},
        "query_set": str(QUERIES.relative_to(ROOT)),
        "through": "GET /api/audiobooks/search/?q=…&limit=3 on audioverse run, first start with the demo seed",
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "engines": engines,
        # The last recorded run's rates, to compare against.
        "previous": {
            "date": previous.get("date"),
            "engines": {
                name: {key: measured[key] for key in ("queries", "top_1", f"top_{TOP}")}
                for name, measured in previous.get("engines", {}).items()
            },
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    for name, measured in engines.items():
        print(
            name, {key: measured[key] for key in ("queries", "top_1", f"top_{TOP}", "searchable_after_start_seconds")}
        )


if __name__ == "__main__":
    main()
