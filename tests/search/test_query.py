"""The query model: what a caller may ask for, and how durations fall into facet buckets."""

from __future__ import annotations

import itertools
import math
from datetime import date

import msgspec
import pytest

from search import SearchFilters, SearchQuery
from search.query import DURATION_BUCKETS, duration_bucket, parse_sort, typo_budget


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(0, "<1h"), (3599.9, "<1h"), (3600, "1-3h"), (10800, "3-6h"), (35999, "6-10h"), (72000, ">20h"), (1e7, ">20h")],
)
def test_each_duration_falls_in_one_bucket_that_includes_its_lower_bound(seconds: float, label: str) -> None:
    assert duration_bucket(seconds) == label


def test_duration_buckets_cover_every_duration_without_gaps() -> None:
    edges = [(bucket.min_seconds, bucket.max_seconds) for bucket in DURATION_BUCKETS]
    assert edges[0][0] is None
    assert edges[-1][1] is None
    assert all(upper == lower for (_, upper), (lower, _) in itertools.pairwise(edges))


@pytest.mark.parametrize(("word", "typos"), [("emma", 0), ("dicken", 1), ("stevenso", 1), ("stevenson", 2)])
def test_longer_words_allow_more_typos(word: str, typos: int) -> None:
    assert typo_budget(word) == typos


def test_sort_options_name_a_field_and_a_direction() -> None:
    assert parse_sort("relevance") is None
    assert parse_sort("title") == ("title", False)
    assert parse_sort("-release_date") == ("release_date", True)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort": "popularity"}, "unknown sort"),
        ({"facets": frozenset({"publishers"})}, "unknown facets"),
    ],
)
def test_a_query_outside_the_contract_is_refused(options: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        SearchQuery(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("bound", [math.nan, math.inf])
def test_numeric_filter_bounds_must_be_finite(bound: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        SearchFilters(min_rating=bound)


def test_a_query_decodes_from_json_with_typed_values() -> None:
    raw = b"""{"text": "holmes", "sort": "-release_date", "facets": ["genres", "duration"], "limit": 5,
               "filters": {"language": "en", "released_after": "1890-01-01", "duration_max": 7200}}"""

    query = msgspec.json.decode(raw, type=SearchQuery)

    assert query.filters.released_after == date(1890, 1, 1)
    assert query.filters.duration_max == 7200.0
    assert query.facets == {"genres", "duration"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"filters": {"author_id": "1 OR 1 = 1"}}', type=SearchQuery)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"filters": {"publisher": "x"}}', type=SearchQuery)
