"""Offline evaluation of the recommender: hold out each user's latest books, score the rest.

Synthetic data with real structure: listeners have two or three *tastes* (latent clusters that cut
across genres: a taste mixes books of several genres), authors and series live inside one taste,
descriptions share a taste's vocabulary, popularity is Zipf-skewed inside each taste, and a fifth of
each listener's books are off-taste popular picks (noise). Each listener's events run forward in
time (listening days, completions, ratings correlated with the taste match, library, favourites); the
most recent ``--holdout`` books of every listener with enough history are removed from training and
are what a method must find in its top 10.

Methods: ``popularity`` (most popular unseen), ``content`` (metadata and description similarity
only), ``cf`` (item-item on scipy.sparse), ``cf-implicit`` (implicit's CosineRecommender item-item,
same support filter), and ``blend`` (what the service serves). Reports hit-rate@10, recall@10,
nDCG@10 and catalog coverage (share of books in anyone's top 10); writes
``bench/results/recommendations.json``.

``uv run python -m bench.recommendations`` (about a minute) or ``--books 2000 --users 1000`` to try.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from implicit.nearest_neighbours import CosineRecommender
from scipy import sparse

from audioverse.recommendations import model
from audioverse.recommendations.model import BookFeatures, Interactions, Signals

RESULTS = Path(__file__).resolve().parent / "results"
VOCABULARY = 5000


@dataclass
class Catalog:
    features: BookFeatures
    taste_of_book: np.ndarray
    books_of_taste: list[np.ndarray]
    zipf: list[np.ndarray]


@dataclass
class Events:
    """Per listener, in time order: (book, day, seconds listened, completed, rating or 0, library, favourite)."""

    users: np.ndarray
    books: np.ndarray
    day: np.ndarray
    seconds: np.ndarray
    completed: np.ndarray
    rating: np.ndarray
    library: np.ndarray
    favourite: np.ndarray


def make_catalog(n_books: int, n_tastes: int, n_genres: int, rng: np.random.Generator) -> Catalog:
    taste_of_book = rng.integers(0, n_tastes, n_books)
    # Each taste draws its books from three genres: tastes cut across genres and genres across tastes.
    taste_genres = np.stack([rng.choice(n_genres, 3, replace=False) for _ in range(n_tastes)])
    genre = taste_genres[taste_of_book, rng.integers(0, 3, n_books)]
    second_genre = np.where(rng.random(n_books) < 0.3, rng.integers(0, n_genres, n_books), -1)
    # Authors write inside one taste (about five books each); narrators read across tastes.
    n_authors = max(1, n_books // 5)
    author_taste = rng.integers(0, n_tastes, n_authors)
    authors_by_taste = [np.flatnonzero(author_taste == t) for t in range(n_tastes)]
    authors = [
        int(rng.choice(pool)) if len(pool) else int(rng.integers(n_authors))
        for pool in (authors_by_taste[t] for t in taste_of_book)
    ]
    narrators = rng.integers(0, max(1, n_books // 20), n_books)
    # A third of the books sit in series of 2-5 by the same author.
    series: list[str | None] = [None] * n_books
    order = rng.permutation(n_books)
    i = 0
    while i < n_books // 3:
        size = int(rng.integers(2, 6))
        members = order[i : i + size]
        for m in members:
            series[m] = f"series-{i}"
            authors[m] = authors[members[0]]
            taste_of_book[m] = taste_of_book[members[0]]
        i += size
    taste_words = rng.integers(0, VOCABULARY, (n_tastes, 40))
    descriptions = [
        " ".join(
            [f"w{w}" for w in rng.choice(taste_words[taste_of_book[b]], 8)]
            + [f"w{w}" for w in rng.integers(0, VOCABULARY, 12)]
            + ["the", "story", "book"]
        )
        for b in range(n_books)
    ]
    books_of_taste = [np.flatnonzero(taste_of_book == t) for t in range(n_tastes)]
    zipf = []
    for members in books_of_taste:
        weights = 1.0 / np.arange(1, len(members) + 1) ** 0.9
        zipf.append(rng.permutation(weights / weights.sum()) if len(members) else weights)
    features = BookFeatures(
        book_ids=list(range(1, n_books + 1)),
        authors=[[a] for a in authors],
        narrators=[[int(n)] for n in narrators],
        genres=[[int(g)] + ([int(s)] if s >= 0 and s != g else []) for g, s in zip(genre, second_genre, strict=True)],
        series=series,
        descriptions=descriptions,
    )
    return Catalog(features, taste_of_book, books_of_taste, zipf)


def make_events(catalog: Catalog, n_users: int, n_events: int, rng: np.random.Generator) -> Events:
    """About ``n_events`` ledger rows (one per listener and book): books drawn from the listener's tastes."""
    n_books = len(catalog.taste_of_book)
    global_pop = 1.0 / np.arange(1, n_books + 1) ** 1.0
    global_cdf = np.cumsum(rng.permutation(global_pop / global_pop.sum()))
    taste_cdfs = [np.cumsum(weights) for weights in catalog.zipf]
    books_per_user = np.maximum(3, rng.lognormal(np.log(max(3.0, n_events / n_users)), 0.6, n_users)).astype(int)
    out: dict[str, list[np.ndarray]] = {k: [] for k in Events.__dataclass_fields__}
    n_tastes = len(catalog.books_of_taste)

    def draw(cdf: np.ndarray, count: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cdf, rng.random(count) * cdf[-1]), len(cdf) - 1)

    for user in range(n_users):
        tastes = rng.choice(n_tastes, int(rng.integers(2, 4)), replace=False)
        count = min(books_per_user[user], n_books // 2)
        noise = int(rng.binomial(count, 0.2))
        per_taste = rng.multinomial(count - noise, np.full(len(tastes), 1 / len(tastes)))
        picks = [draw(global_cdf, noise)]
        for taste, taken in zip(tastes, per_taste, strict=True):
            members = catalog.books_of_taste[taste]
            if len(members):
                picks.append(members[draw(taste_cdfs[taste], int(taken))])
        books = np.unique(np.concatenate(picks))
        books = rng.permutation(books)
        on_taste = np.isin(catalog.taste_of_book[books], tastes)
        start = rng.integers(0, 300)
        days = start + np.cumsum(rng.integers(1, 6, len(books)))
        sessions = rng.integers(1, 6, len(books))
        completed = rng.random(len(books)) < np.where(on_taste, 0.7, 0.3)
        rating = np.where(
            rng.random(len(books)) < 0.35,
            np.where(on_taste, rng.integers(4, 6, len(books)), rng.integers(1, 4, len(books))),
            0,
        )
        library = rng.random(len(books)) < 0.4
        favourite = library & (rng.random(len(books)) < np.where(on_taste, 0.3, 0.05))
        for key, values in (
            ("users", np.full(len(books), user)),
            ("books", books + 1),
            ("day", days),
            ("seconds", sessions * rng.uniform(600, 3600, len(books))),
            ("completed", completed),
            ("rating", rating),
            ("library", library),
            ("favourite", favourite),
        ):
            out[key].append(values)
    return Events(**{k: np.concatenate(v) for k, v in out.items()})


def signals_from(events: Events, mask: np.ndarray, today: float) -> Signals:
    signals = Signals()
    u, b, age = events.users[mask], events.books[mask], today - events.day[mask].astype(float)
    signals.listening(u, b, events.seconds[mask], age)
    done = events.completed[mask]
    signals.add(u[done], b[done], np.full(done.sum(), model.COMPLETION_WEIGHT), age[done])
    rated = events.rating[mask] > 0
    signals.ratings(u[rated].tolist(), b[rated].tolist(), events.rating[mask][rated].tolist(), age[rated].tolist())
    lib = events.library[mask]
    signals.add(u[lib], b[lib], np.full(lib.sum(), model.LIBRARY_WEIGHT), age[lib])
    fav = events.favourite[mask]
    signals.add(u[fav], b[fav], np.full(fav.sum(), model.FAVOURITE_WEIGHT), age[fav])
    return signals


def split(events: Events, holdout: int, min_history: int) -> tuple[np.ndarray, dict[int, set[int]]]:
    """Training mask, and each evaluated listener's held-out books (their latest, liked or finished)."""
    train = np.ones(len(events.users), dtype=bool)
    held: dict[int, set[int]] = {}
    boundaries = np.flatnonzero(np.diff(events.users)) + 1
    for rows in np.split(np.arange(len(events.users)), boundaries):
        if len(rows) < min_history + holdout:
            continue
        latest = rows[np.argsort(events.day[rows])[-holdout:]]
        # Only what they went on to enjoy is a hit to find (not a book they abandoned or disliked).
        enjoyed = latest[
            (events.completed[latest] | (events.rating[latest] >= 4))
            & ~((events.rating[latest] > 0) & (events.rating[latest] <= 2))
        ]
        train[latest] = False
        if len(enjoyed):
            held[int(events.users[rows[0]])] = {int(events.books[i]) for i in enjoyed}
    return train, held


def implicit_similarity(interactions: Interactions, k: int, timings: dict[str, float]) -> sparse.csr_matrix:
    """The implicit library's item-item cosine, then the same support threshold and shrinkage as ours."""
    started = time.perf_counter()
    recommender = CosineRecommender(K=k + 1)
    recommender.fit(sparse.csr_matrix(interactions.matrix), show_progress=False)
    similarity = sparse.csr_matrix(recommender.similarity, dtype=np.float64)
    timings["cf_implicit_fit_seconds"] = time.perf_counter() - started
    similarity.setdiag(0.0)
    similarity.eliminate_zeros()
    binary = sparse.csr_matrix(interactions.matrix, copy=True)
    binary.data[:] = 1.0
    support = sparse.csr_matrix(sparse.csr_matrix(binary.T) @ binary).multiply(similarity > 0)
    support = sparse.csr_matrix(support)
    similarity.sort_indices()
    support.sort_indices()
    counts = support.data
    similarity.data = similarity.data * (counts / (counts + model.SHRINK)) * (counts >= model.MIN_SUPPORT)
    similarity.eliminate_zeros()
    return similarity


def evaluate(
    picks: list[list[model.Recommendation]], rows: list[int], interactions: Interactions, held: dict[int, set[int]]
) -> dict[str, float]:
    hits = recall = ndcg = 0.0
    shown: set[int] = set()
    for user_row, recs in zip(rows, picks, strict=True):
        user = int(interactions.user_ids[user_row])
        truth = held[user]
        top = [int(interactions.book_ids[r.book]) for r in recs[:10]]
        shown.update(top)
        found = [i for i, book in enumerate(top) if book in truth]
        hits += bool(found)
        recall += len(found) / len(truth)
        ideal = sum(1 / np.log2(i + 2) for i in range(min(10, len(truth))))
        ndcg += sum(1 / np.log2(i + 2) for i in found) / ideal
    n = max(1, len(rows))
    return {
        "hit_rate_at_10": round(hits / n, 4),
        "recall_at_10": round(recall / n, 4),
        "ndcg_at_10": round(float(ndcg) / n, 4),
        "coverage": round(len(shown) / len(interactions.book_ids), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=5000)
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--events", type=int, default=40_000, help="ledger rows (listener x book), roughly")
    parser.add_argument("--tastes", type=int, default=60)
    parser.add_argument("--genres", type=int, default=20)
    parser.add_argument("--holdout", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--output", type=Path, default=RESULTS / "recommendations.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    catalog = make_catalog(args.books, args.tastes, args.genres, rng)
    events = make_events(catalog, args.users, args.events, rng)
    today = float(events.day.max() + 1)
    train, held = split(events, args.holdout, min_history=3)
    interactions = model.build_interactions(signals_from(events, train, today), catalog.features.book_ids)
    index = interactions.user_index
    rows = [index[u] for u in held if u in index]
    held = {int(interactions.user_ids[r]): held[int(interactions.user_ids[r])] for r in rows}

    timings: dict[str, float] = {}
    started = time.perf_counter()
    collaborative = model.item_similarity(interactions)
    timings["cf_scipy_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    collaborative_implicit = implicit_similarity(interactions, model.NEIGHBOURS, timings)
    timings["cf_implicit_with_support_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    content = model.content_similarity(model.content_features(catalog.features, interactions.book_ids))
    timings["content_seconds"] = time.perf_counter() - started
    popular = model.popularity(interactions)

    methods = {
        "popularity": (None, None, (0.0, 0.0, 1.0)),
        "content": (None, content, (0.0, 1.0, 0.0)),
        "cf": (collaborative, None, (1.0, 0.0, 0.0)),
        "cf-implicit": (collaborative_implicit, None, (1.0, 0.0, 0.0)),
        "blend": (collaborative, content, (model.BLEND_CF, model.BLEND_CONTENT, model.BLEND_POPULAR)),
        "blend-implicit": (
            collaborative_implicit,
            content,
            (model.BLEND_CF, model.BLEND_CONTENT, model.BLEND_POPULAR),
        ),
    }
    report: dict[str, dict[str, float]] = {}
    for name, (cf, ct, weights) in methods.items():
        started = time.perf_counter()
        picks = model.recommend_for_rows(interactions, cf, ct, popular, rows, n=10, weights=weights)
        report[name] = evaluate(picks, rows, interactions, held) | {"seconds": round(time.perf_counter() - started, 2)}
        print(name, report[name])
    result = {
        "benchmark": "recommendations",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "books": args.books,
            "users": args.users,
            "listeners_evaluated": len(rows),
            "training_cells": int(interactions.matrix.nnz),
            "ledger_rows": len(events.users),
            "tastes": args.tastes,
            "genres": args.genres,
            "holdout_per_listener": args.holdout,
            "seed": args.seed,
        },
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version()},
        "parameters": {
            "min_support": model.MIN_SUPPORT,
            "shrink": model.SHRINK,
            "neighbours": model.NEIGHBOURS,
            "blend": [model.BLEND_CF, model.BLEND_CONTENT, model.BLEND_POPULAR],
        },
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
        "methods": report,
        "goals": {
            "blend_hit_rate_over_popularity": round(
                report["blend"]["hit_rate_at_10"] / max(report["popularity"]["hit_rate_at_10"], 1e-9), 2
            ),
            "blend_coverage": report["blend"]["coverage"],
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["goals"]))


if __name__ == "__main__":
    main()
