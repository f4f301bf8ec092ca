"""The recommender's numerics: signal weights, item-item CF, content similarity, popularity and the blend.

Pure numpy/scipy on arrays the services read from the database, so the offline evaluation
(``bench/recommendations.py``) and the worker run the very same code.

Signals and their weights (one user x book cell is the decayed sum of its events, then ``log1p``):

==========================  ======  ===================================================================
event                       weight  why
==========================  ======  ===================================================================
forward listening, per day  ≤ 1.0   ``min(seconds, 1 h) / 1 h`` per ledger day: the ledger counts only
                                    forward play (a seek adds nothing), so scrubbing cannot inflate it;
                                    the cap keeps one marathon day from drowning everything else.
completion                  3.0     finishing a book is the strongest implicit "I liked it".
rating 5 / 4 / 3            3 / 2 / 0.5  explicit and deliberate; a 3 is lukewarm, barely positive.
rating ≤ 2                  < 0     a dislike: the cell leaves the positive matrix (it never builds
                                    co-occurrence) and pushes the book's neighbours down by
                                    ``DISLIKE_PENALTY`` in the user's scores.
favourite                   2.0     an explicit keep, weaker than a rating (no listening behind it yet).
library                     1.0     intent to listen: a weak positive.
recency                     x 0.5^(age / 180 d)  tastes drift; half a year halves an event.
==========================  ======  ===================================================================

``log1p`` of the sum damps the heavy listeners and the many-signal cells (a finished, favourited,
5-star book is a strong signal, not eleven times one hour of listening).

Item-item similarity is cosine on those weights, shrunk by support (``c / (c + SHRINK)``) and
kept only where at least ``MIN_SUPPORT`` distinct listeners share the two books: a book's
"listeners also enjoyed" list can then never show what one other listener played, even to a
viewer who is one of the co-listeners (with 3, at least two others remain).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LISTEN_CAP_SECONDS = 3600.0
COMPLETION_WEIGHT = 3.0
RATING_WEIGHTS = {5: 3.0, 4: 2.0, 3: 0.5}
DISLIKE_MAX_RATING = 2
FAVOURITE_WEIGHT = 2.0
LIBRARY_WEIGHT = 1.0
HALF_LIFE_DAYS = 180.0
MIN_SUPPORT = 3
SHRINK = 5.0
NEIGHBOURS = 50
DISLIKE_PENALTY = 0.5
# Blend: collaborative first, content for the tail and the cold books, popularity as the prior.
# Chosen on the offline evaluation (bench/recommendations.py): content at 0.2 and popularity at 0.1
# keep CF's hit rate (0.312 against CF alone 0.311; 0.35/0.15 cost 2 points) while more than doubling
# catalog coverage (47 % against 26 %); 0.1/0.05 gain nothing more in hits and lose coverage.
BLEND_CF = 1.0
BLEND_CONTENT = 0.2
BLEND_POPULAR = 0.1
# Content features: a shared series says most, then an author, a narrator, then the words.
SERIES_WEIGHT = 4.0
AUTHOR_WEIGHT = 3.0
NARRATOR_WEIGHT = 1.0
TEXT_WEIGHT = 1.0
TEXT_BUCKETS = 1 << 18
# Words in more than this share of descriptions say nothing about a book (and make the product dense).
TEXT_MAX_DOCUMENT_SHARE = 0.02
TEXT_TERMS_PER_BOOK = 24
BLOCK = 2048

WORD = re.compile(r"[^\W\d_]{3,}")


def decay(age_days: FloatArray) -> FloatArray:
    result: FloatArray = np.power(0.5, np.maximum(age_days, 0.0) / HALF_LIFE_DAYS)
    return result


@dataclass
class Signals:
    """Events as parallel arrays of user id, book id, weight (already per-event) and age in days."""

    users: list[IntArray] = field(default_factory=list)
    books: list[IntArray] = field(default_factory=list)
    weights: list[FloatArray] = field(default_factory=list)
    disliked_users: list[IntArray] = field(default_factory=list)
    disliked_books: list[IntArray] = field(default_factory=list)

    def add(self, users: Iterable[int], books: Iterable[int], weights: Iterable[float], ages: Iterable[float]) -> None:
        u = np.fromiter(users, dtype=np.int64)
        b = np.fromiter(books, dtype=np.int64)
        w = np.fromiter(weights, dtype=np.float64)
        a = np.fromiter(ages, dtype=np.float64)
        self.users.append(u)
        self.books.append(b)
        self.weights.append(w * decay(a))

    def listening(
        self, users: Iterable[int], books: Iterable[int], seconds: Iterable[float], ages: Iterable[float]
    ) -> None:
        self.add(users, books, (min(s, LISTEN_CAP_SECONDS) / LISTEN_CAP_SECONDS for s in seconds), ages)

    def ratings(
        self, users: Sequence[int], books: Sequence[int], ratings: Sequence[int], ages: Sequence[float]
    ) -> None:
        liked = [i for i, r in enumerate(ratings) if r > DISLIKE_MAX_RATING]
        self.add(
            (users[i] for i in liked),
            (books[i] for i in liked),
            (RATING_WEIGHTS.get(ratings[i], 0.0) for i in liked),
            (ages[i] for i in liked),
        )
        disliked = [i for i, r in enumerate(ratings) if r <= DISLIKE_MAX_RATING]
        self.disliked_users.append(np.array([users[i] for i in disliked], dtype=np.int64))
        self.disliked_books.append(np.array([books[i] for i in disliked], dtype=np.int64))


@dataclass
class Interactions:
    """The user x book matrix of positive weights, its dislikes, and the id maps of both axes."""

    matrix: sparse.csr_matrix
    dislikes: sparse.csr_matrix
    user_ids: IntArray
    book_ids: IntArray

    @property
    def book_index(self) -> dict[int, int]:
        return {int(book): i for i, book in enumerate(self.book_ids)}

    @property
    def user_index(self) -> dict[int, int]:
        return {int(user): i for i, user in enumerate(self.user_ids)}


def _concat(parts: list[npt.NDArray[np.int64]] | list[FloatArray], dtype: type) -> npt.NDArray[np.generic]:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def build_interactions(signals: Signals, book_ids: Sequence[int]) -> Interactions:
    """Sum each cell's events, drop disliked cells and books not in ``book_ids``, then ``log1p``."""
    books_axis = np.asarray(sorted(set(book_ids)), dtype=np.int64)
    users = _concat(signals.users, np.int64)
    disliked_users = _concat(signals.disliked_users, np.int64)
    user_axis = np.unique(np.concatenate([users, disliked_users]))
    shape = (len(user_axis), len(books_axis))

    def cells(u: npt.NDArray[np.generic], b: npt.NDArray[np.generic], w: npt.NDArray[np.generic]) -> sparse.csr_matrix:
        bi = np.searchsorted(books_axis, b)
        known = (bi < len(books_axis)) & (books_axis[np.minimum(bi, len(books_axis) - 1)] == b) if len(b) else bi > 0
        ui = np.searchsorted(user_axis, u)
        return sparse.csr_matrix((w[known], (ui[known], bi[known])), shape=shape, dtype=np.float64)

    positive = cells(users, _concat(signals.books, np.int64), _concat(signals.weights, np.float64))
    disliked = cells(disliked_users, _concat(signals.disliked_books, np.int64), np.ones(len(disliked_users)))
    disliked.data[:] = 1.0
    positive.sum_duplicates()
    positive = positive - positive.multiply(disliked > 0)
    positive.eliminate_zeros()
    positive.data = np.log1p(np.maximum(positive.data, 0.0))
    positive.eliminate_zeros()
    return Interactions(sparse.csr_matrix(positive), sparse.csr_matrix(disliked), user_axis, books_axis)


def _top_k_rows(matrix: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """Keep the ``k`` largest entries of each row."""
    matrix = sparse.csr_matrix(matrix)
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    keep_rows: list[npt.NDArray[np.int64]] = []
    for row in range(matrix.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        keep_rows.append(
            start + np.argpartition(-data[start:end], k - 1)[:k] if end - start > k else np.arange(start, end)
        )
    keep = np.concatenate(keep_rows) if keep_rows else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(matrix.shape[0]), [len(r) for r in keep_rows]) if keep_rows else keep
    return sparse.csr_matrix((data[keep], (rows, indices[keep])), shape=matrix.shape)


def _without_self(block: sparse.csr_matrix, first_row: int) -> sparse.csr_matrix:
    """Drop each book's similarity to itself from a block of rows starting at book ``first_row``."""
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    block.data[rows + first_row == block.indices] = 0.0
    block.eliminate_zeros()
    return block


def _normalized_columns(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(matrix @ sparse.diags(1.0 / norms))


def item_similarity(
    interactions: Interactions, *, k: int = NEIGHBOURS, min_support: int = MIN_SUPPORT, shrink: float = SHRINK
) -> sparse.csr_matrix:
    """Book x book cosine on the weights, shrunk by support, ``min_support`` listeners at least, top ``k``.

    Computed in blocks of rows so memory stays bounded by the block's co-occurrences.
    """
    positive = interactions.matrix
    binary = sparse.csr_matrix(positive, copy=True)
    binary.data[:] = 1.0
    normalized = _normalized_columns(positive)
    items_normalized = sparse.csr_matrix(normalized.T)
    items_binary = sparse.csr_matrix(binary.T)

    def block(start: int, stop: int) -> sparse.csr_matrix:
        cosine = sparse.csr_matrix(items_normalized[start:stop] @ normalized)
        support = sparse.csr_matrix(items_binary[start:stop] @ binary)
        cosine.sort_indices()
        support.sort_indices()
        # Both products share one pattern (a weight is positive exactly where its bit is set).
        counts = support.data
        cosine.data = cosine.data * (counts / (counts + shrink)) * (counts >= min_support)
        return cosine

    return _top_k_blockwise(positive.shape[1], block, k)


def _top_k_blockwise(n_books: int, block: Callable[[int, int], sparse.csr_matrix], k: int) -> sparse.csr_matrix:
    """A book x book similarity built ``BLOCK`` rows at a time, each book's self and all but its top ``k`` dropped."""
    blocks = [
        _top_k_rows(_without_self(block(start, min(start + BLOCK, n_books)), start), k)
        for start in range(0, n_books, BLOCK)
    ]
    return sparse.csr_matrix(sparse.vstack(blocks)) if blocks else sparse.csr_matrix((n_books, n_books))


@dataclass
class BookFeatures:
    """Catalog metadata per book, parallel to ``book_ids``."""

    book_ids: Sequence[int]
    authors: Sequence[Sequence[int]]
    narrators: Sequence[Sequence[int]]
    genres: Sequence[Sequence[int]]
    series: Sequence[str | None]
    descriptions: Sequence[str]


def _bucket(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little") % TEXT_BUCKETS


def content_features(features: BookFeatures, book_axis: IntArray) -> sparse.csr_matrix:
    """Rows of weighted, hashed features in ``book_axis`` order: series, authors, narrators, rare words."""
    position = {int(book): i for i, book in enumerate(book_axis)}
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    terms_per_book: list[tuple[int, set[int]]] = []
    document_frequency: dict[int, int] = {}
    for i, book in enumerate(features.book_ids):
        row = position.get(int(book))
        if row is None:
            continue
        if features.series[i]:
            rows.append(row)
            cols.append(_bucket("s:" + features.series[i].lower()))  # type: ignore[union-attr]
            vals.append(SERIES_WEIGHT)
        for author in features.authors[i]:
            rows.append(row)
            cols.append(_bucket(f"a:{author}"))
            vals.append(AUTHOR_WEIGHT)
        for narrator in features.narrators[i]:
            rows.append(row)
            cols.append(_bucket(f"n:{narrator}"))
            vals.append(NARRATOR_WEIGHT)
        words = {_bucket("w:" + w) for w in WORD.findall(features.descriptions[i].lower())}
        terms_per_book.append((row, words))
        for term in words:
            document_frequency[term] = document_frequency.get(term, 0) + 1
    n_docs = max(1, len(terms_per_book))
    limit = max(2, int(TEXT_MAX_DOCUMENT_SHARE * n_docs))
    for row, words in terms_per_book:
        # A word in one description only cannot match another; one in too many matches everything.
        scored = sorted(
            ((np.log(n_docs / document_frequency[t]), t) for t in words if 1 < document_frequency[t] <= limit),
            reverse=True,
        )[:TEXT_TERMS_PER_BOOK]
        norm = np.sqrt(sum(idf * idf for idf, _ in scored)) or 1.0
        for idf, term in scored:
            rows.append(row)
            cols.append(term)
            vals.append(TEXT_WEIGHT * idf / norm)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(len(book_axis), TEXT_BUCKETS), dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix)


def content_similarity(features: sparse.csr_matrix, *, k: int = NEIGHBOURS) -> sparse.csr_matrix:
    """Book x book cosine on the content features, top ``k`` per book, in blocks."""
    transposed = sparse.csr_matrix(features.T)
    return _top_k_blockwise(
        features.shape[0], lambda start, stop: sparse.csr_matrix(features[start:stop] @ transposed), k
    )


def popularity(interactions: Interactions) -> FloatArray:
    """Per book: how many listeners hold it positively, recency-weighted through their weights."""
    binary = interactions.matrix.copy()
    binary.data = np.minimum(binary.data, 1.0)
    counts: FloatArray = np.asarray(binary.sum(axis=0)).ravel()
    return counts


def popular_by_genre(
    scores: FloatArray, book_axis: IntArray, features: BookFeatures, per_genre: int = 200
) -> dict[int, list[int]]:
    """The ``per_genre`` most popular books of each genre, as book ids."""
    position = {int(book): i for i, book in enumerate(book_axis)}
    members: dict[int, list[int]] = {}
    for i, book in enumerate(features.book_ids):
        for genre in features.genres[i]:
            members.setdefault(genre, []).append(position[int(book)])
    shelves: dict[int, list[int]] = {}
    for genre, rows in members.items():
        index = np.asarray(rows)
        order = index[np.argsort(-scores[index], kind="stable")[:per_genre]]
        shelves[genre] = [int(book_axis[i]) for i in order]
    return shelves


@dataclass
class Recommendation:
    """A pick as column indexes of the interaction matrix (the caller maps them to book ids)."""

    book: int
    score: float
    because: int | None
    """The history book that contributed most (CF: ``listened_with``; content: shared metadata)."""
    collaborative: bool


def _positive_scaled(scores: sparse.csr_matrix) -> sparse.csr_matrix:
    """Negative scores dropped (a dislike's pull), then each row scaled to a largest value of 1."""
    scores = sparse.csr_matrix(scores)
    scores.data = np.maximum(scores.data, 0.0)
    scores.eliminate_zeros()
    return _row_scaled(scores)


def recommend_for_rows(
    interactions: Interactions,
    collaborative: sparse.csr_matrix | None,
    content: sparse.csr_matrix | None,
    popular: FloatArray,
    user_rows: Sequence[int],
    *,
    n: int = 100,
    weights: tuple[float, float, float] = (BLEND_CF, BLEND_CONTENT, BLEND_POPULAR),
) -> list[list[Recommendation]]:
    """Top ``n`` for each user row: the blend of CF, content and popularity, the user's own books left out.

    Scored as sparse matrices a block of users at a time: only the books some signal reaches (the
    neighbours of the history, and the most popular books) are ever touched.
    """
    matrix, dislikes = interactions.matrix, interactions.dislikes
    n_books = matrix.shape[1]
    top_popular = float(popular.max()) if popular.size else 0.0
    popular_scaled = popular / top_popular if top_popular > 0 else popular.astype(np.float64)
    w_cf, w_content, w_popular = weights
    prior = np.argsort(-popular_scaled, kind="stable")[: n + 200] if w_popular else np.zeros(0, dtype=np.int64)
    results: list[list[Recommendation]] = []
    for start in range(0, len(user_rows), 512):
        rows = np.asarray(user_rows[start : start + 512], dtype=np.int64)
        history, disliked = matrix[rows], dislikes[rows]
        block = len(rows)
        total = sparse.csr_matrix(
            (
                np.tile(w_popular * popular_scaled[prior], block),
                (np.repeat(np.arange(block), len(prior)), np.tile(prior, block)),
            ),
            shape=(block, n_books),
        )
        for similarity, weight in ((collaborative, w_cf), (content, w_content)):
            if similarity is not None and weight:
                total = total + weight * _positive_scaled(
                    history @ similarity - DISLIKE_PENALTY * (disliked @ similarity)
                )
        total = sparse.csr_matrix(total - total.multiply((history + disliked) > 0))
        total.data[total.data < 0] = 0.0
        total.eliminate_zeros()
        top = _top_k_rows(total, n)
        top.sort_indices()
        cf_best, cf_source = _strongest_sources(collaborative, history, top)
        _, content_source = _strongest_sources(content, history, top)
        for r in range(block):
            begin, end = top.indptr[r], top.indptr[r + 1]
            picks = []
            for j in begin + np.argsort(-top.data[begin:end], kind="stable"):
                because: int | None
                if cf_best[j] > 0:
                    because, collaborative_pick = int(cf_source[j]), True
                else:
                    because, collaborative_pick = (int(content_source[j]) if content_source[j] >= 0 else None), False
                picks.append(Recommendation(int(top.indices[j]), float(top.data[j]), because, collaborative_pick))
            results.append(picks)
    return results


def _strongest_sources(
    similarity: sparse.csr_matrix | None, history: sparse.csr_matrix, top: sparse.csr_matrix
) -> tuple[FloatArray, IntArray]:
    """Per entry of ``top`` (aligned with ``top.data``): its strongest history book and that strength.

    The strength is the largest ``weight x similarity`` over the user's history (-1: no history book
    reaches it).
    """
    best = np.zeros(top.nnz)
    source = np.full(top.nnz, -1, dtype=np.int64)
    if similarity is None or not history.nnz or not top.nnz:
        return best, source
    n_books = top.shape[1]
    held_user = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
    held_book = history.indices.astype(np.int64)
    sub = similarity[held_book]
    entry = np.repeat(np.arange(len(held_book)), np.diff(sub.indptr))
    keys = held_user[entry] * n_books + sub.indices
    values = sub.data * history.data[entry]
    top_keys = np.repeat(np.arange(top.shape[0]), np.diff(top.indptr)) * n_books + top.indices
    position = np.minimum(np.searchsorted(top_keys, keys), len(top_keys) - 1)
    hit = (top_keys[position] == keys) & (values > 0)
    position, values, origin = position[hit], values[hit], held_book[entry[hit]]
    ascending = np.argsort(values, kind="stable")
    # Assigned in ascending order, so each entry keeps its largest value (the last write wins).
    best[position[ascending]] = values[ascending]
    source[position[ascending]] = origin[ascending]
    return best, source


def _row_scaled(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    """Each row divided by its largest value."""
    top = np.asarray(matrix.max(axis=1).todense()).ravel()
    top[top <= 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / top) @ matrix)


def book_neighbours(
    collaborative: sparse.csr_matrix, content: sparse.csr_matrix, *, k: int = NEIGHBOURS
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Per book, its top ``k`` blended neighbours, and which of them CF found (a 0/1 matrix of the same rows).

    Each part is scaled to 1 per book, then weighted as in the personal blend.
    """
    blended = sparse.csr_matrix(BLEND_CF * _row_scaled(collaborative) + BLEND_CONTENT * _row_scaled(content))
    kept = _top_k_rows(blended, k)
    kept.sort_indices()
    found = sparse.csr_matrix(collaborative, copy=True)
    found.data[:] = 1.0
    by_cf = sparse.csr_matrix(kept.multiply(found) > 0, dtype=np.float64)
    return kept, by_cf
