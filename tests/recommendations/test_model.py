"""The recommender's numerics on matrices small enough to check by hand."""

from __future__ import annotations

import numpy as np

from audioverse.recommendations import model
from audioverse.recommendations.model import BookFeatures, Signals


def finished(pairs: list[tuple[int, int]], age: float = 0.0) -> Signals:
    signals = Signals()
    signals.add(
        [u for u, _ in pairs], [b for _, b in pairs], [model.COMPLETION_WEIGHT] * len(pairs), [age] * len(pairs)
    )
    return signals


def neighbours(similarity: object, interactions: model.Interactions, book: int) -> set[int]:
    row = interactions.book_index[book]
    matrix = similarity  # csr
    start, end = matrix.indptr[row], matrix.indptr[row + 1]  # type: ignore[attr-defined]
    return {int(interactions.book_ids[i]) for i in matrix.indices[start:end]}  # type: ignore[attr-defined]


def test_co_listens_need_the_minimum_support() -> None:
    below = [(user, book) for user in range(model.MIN_SUPPORT - 1) for book in (10, 20)]
    interactions = model.build_interactions(finished(below), [10, 20, 30])
    assert neighbours(model.item_similarity(interactions), interactions, 10) == set()
    enough = [(user, book) for user in range(model.MIN_SUPPORT) for book in (10, 20)]
    interactions = model.build_interactions(finished(enough), [10, 20, 30])
    assert neighbours(model.item_similarity(interactions), interactions, 10) == {20}


def test_a_dislike_leaves_the_positive_matrix_and_pushes_its_neighbours_down() -> None:
    signals = finished([(1, 10), (2, 10), (3, 10), (1, 20), (2, 20), (3, 20), (4, 30)])
    signals.ratings([4, 4], [10, 30], [1, 5], [0.0, 0.0])
    interactions = model.build_interactions(signals, [10, 20, 30])
    row = interactions.user_index[4]
    assert interactions.matrix[row, interactions.book_index[10]] == 0
    assert interactions.dislikes[row, interactions.book_index[10]] == 1
    picks = model.recommend_for_rows(
        interactions, model.item_similarity(interactions), None, np.zeros(3), [row], weights=(1.0, 0.0, 0.0)
    )[0]
    assert interactions.book_index[20] not in {p.book for p in picks}


def test_recency_halves_an_event_every_half_life() -> None:
    assert np.allclose(model.decay(np.array([0.0, model.HALF_LIFE_DAYS, 2 * model.HALF_LIFE_DAYS])), [1, 0.5, 0.25])


def test_content_neighbours_share_series_then_authors() -> None:
    features = BookFeatures(
        book_ids=[1, 2, 3, 4],
        authors=[[7], [7], [8], [9]],
        narrators=[[1], [2], [3], [4]],
        genres=[[1], [2], [3], [4]],
        series=["Saga", None, "saga", None],
        descriptions=["", "", "", ""],
    )
    axis = np.asarray([1, 2, 3, 4])
    similarity = model.content_similarity(model.content_features(features, axis)).toarray()
    assert similarity[0, 2] > similarity[0, 1] > 0  # the same series outweighs the same author
    assert similarity[0, 3] == 0
    assert np.all(np.diag(similarity) == 0)
