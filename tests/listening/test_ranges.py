"""Range, If-Range and conditional GET decisions over RFC 9110 cases, without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from audioverse.listening.ranges import (
    ByteRange,
    FullContent,
    MultipartByteranges,
    NotModified,
    PartialContent,
    RangeNotSatisfiable,
    Representation,
    RequestConditions,
    evaluate,
    http_date,
    parse_http_date,
    parse_range,
    quote_etag,
    validator_headers,
)

SIZE = 10_000
MODIFIED = datetime(2026, 3, 14, 15, 9, 26, 535_000, tzinfo=UTC)
MODIFIED_HTTP = "Sat, 14 Mar 2026 15:09:26 GMT"
ETAG = '"v1-10000"'
BOOK = Representation(size=SIZE, etag=ETAG, last_modified=MODIFIED)


def spans(decision: object) -> list[tuple[int, int]]:
    assert isinstance(decision, PartialContent), decision
    return [(byte_range.start, byte_range.end) for byte_range in decision.ranges]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # RFC 9110 §14.1.2's own examples, on a 10,000-byte representation.
        ("bytes=0-499", [(0, 499)]),
        ("bytes=500-999", [(500, 999)]),
        ("bytes=-500", [(9500, 9999)]),
        ("bytes=9500-", [(9500, 9999)]),
        ("bytes=0-0,-1", [(0, 0), (9999, 9999)]),
        ("bytes=500-600,601-999", [(500, 600), (601, 999)]),
        ("bytes=500-700,601-999", [(500, 700), (601, 999)]),
        # An end past the representation is clamped; a suffix longer than it means all of it.
        ("bytes=9000-20000", [(9000, 9999)]),
        ("bytes=-20000", [(0, 9999)]),
        ("bytes=0-9223372036854775807", [(0, 9999)]),
        # The unit is case-insensitive; nginx allows spaces around numbers, dashes and commas.
        ("Bytes=1-2", [(1, 2)]),
        ("bytes= 1 - 2 , 4-5", [(1, 2), (4, 5)]),
        ("bytes=007-008", [(7, 8)]),
        # Order is kept, nothing is merged, and specs outside the representation are dropped.
        ("bytes=20-30,0-5", [(20, 30), (0, 5)]),
        ("bytes=0-10,11-20", [(0, 10), (11, 20)]),
        ("bytes=0-10,20000-30000", [(0, 10)]),
        ("bytes=5-2,0-5", [(0, 5)]),
        ("bytes=0-1,-0", [(0, 1)]),
    ],
)
def test_satisfiable_ranges(header: str, expected: list[tuple[int, int]]) -> None:
    assert spans(parse_range(header, SIZE)) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "items=0-5",  # unknown unit: ignored
        "bytes",
        "bytes=",  # nginx needs something after "bytes=" to read it as a range set
        "bytes = 0-5",
        "bytesx=0-1",
        "bytes=0-5000,4000-9999",  # overlapping, longer than the file: sent once, whole
        "bytes=0-,0-",
    ],
)
def test_headers_that_get_the_whole_representation(header: str | None) -> None:
    assert parse_range(header, SIZE) == FullContent()


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-2",
        "bytes=abc",
        "bytes=-0",
        "bytes=--1",
        "bytes=-",
        "bytes=0",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=0-5;x",
        "bytes=0-5,",
        "bytes=,0-5",
        "bytes=0-5,,7-9",
        "bytes=0-5,\t7-9",  # nginx skips spaces only
        "bytes=0-5,abc",  # one bad spec spoils the header even after a good one
        "bytes=10000-",  # first byte past the end
        "bytes=20000-30000",
        "bytes=0-9223372036854775808",  # does not fit nginx's off_t
        "bytes=99999999999999999999-",
        "bytes=-99999999999999999999",
    ],
)
def test_unsatisfiable_or_invalid_ranges_are_416_with_the_size(header: str) -> None:
    decision = parse_range(header, SIZE)
    assert decision == RangeNotSatisfiable(SIZE)
    assert decision.content_range == "bytes */10000"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", FullContent()),
        ("bytes=0-0", FullContent()),
        ("bytes=-1", FullContent()),
        ("bytes=-0", FullContent()),
        ("bytes=0-,abc", FullContent()),  # nginx stops reading at the first spec
        ("bytes=1-", RangeNotSatisfiable(0)),
        ("bytes=abc", RangeNotSatisfiable(0)),
    ],
)
def test_empty_representation(header: str, expected: object) -> None:
    assert parse_range(header, 0) == expected


def test_one_byte_representation() -> None:
    assert spans(parse_range("bytes=-5", 1)) == [(0, 0)]
    assert parse_range("bytes=1-", 1) == RangeNotSatisfiable(1)
    assert parse_range("bytes=0-0,0-0", 1) == FullContent()


def test_more_ranges_than_the_limit_get_the_whole_representation() -> None:
    three = "bytes=0-0,2-2,4-4"
    assert spans(parse_range(three, SIZE, max_ranges=3)) == [(0, 0), (2, 2), (4, 4)]
    assert parse_range(three, SIZE, max_ranges=2) == FullContent()
    # nginx gives up before it would notice the bad spec at the end.
    assert parse_range(three + ",abc", SIZE, max_ranges=2) == FullContent()


def test_numbers_of_any_length_are_read_without_error() -> None:
    assert parse_range("bytes=0-" + "9" * 5000, SIZE) == RangeNotSatisfiable(SIZE)
    assert spans(parse_range("bytes=" + "0" * 5000 + "7-" + "0" * 5000 + "8", SIZE)) == [(7, 8)]


def test_byte_range_headers() -> None:
    byte_range = ByteRange(500, 999, SIZE)
    assert byte_range.length == 500
    assert byte_range.content_range == "bytes 500-999/10000"


def conditions(**fields: str) -> RequestConditions:
    return RequestConditions(**fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"if_none_match": ETAG}, NotModified()),
        ({"if_none_match": f"W/{ETAG}"}, NotModified()),  # If-None-Match compares weakly
        ({"if_none_match": "*"}, NotModified()),
        ({"if_none_match": f'"a", {ETAG} ,"b"'}, NotModified()),
        ({"if_none_match": '"a", "b"'}, FullContent()),
        ({"if_none_match": ETAG.strip('"')}, FullContent()),  # not an entity-tag
        ({"if_none_match": ETAG, "range": "bytes=0-9"}, NotModified()),
        ({"if_modified_since": MODIFIED_HTTP}, NotModified()),  # sub-second mtime still matches
        ({"if_modified_since": "Sat, 14 Mar 2026 15:09:27 GMT"}, NotModified()),
        ({"if_modified_since": "Sat, 14 Mar 2026 15:09:25 GMT"}, FullContent()),
        ({"if_modified_since": "yesterday"}, FullContent()),
        ({"if_modified_since": MODIFIED_HTTP, "range": "bytes=0-9"}, NotModified()),
        # RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present, either way.
        # nginx differs here: it answers 200 unless both match.
        ({"if_none_match": ETAG, "if_modified_since": "Sat, 14 Mar 2026 15:09:25 GMT"}, NotModified()),
        ({"if_none_match": '"other"', "if_modified_since": MODIFIED_HTTP}, FullContent()),
    ],
)
def test_conditional_get(fields: dict[str, str], expected: object) -> None:
    assert evaluate(conditions(**fields), BOOK) == expected


@pytest.mark.parametrize(
    ("if_range", "honoured"),
    [
        (ETAG, True),
        (f"W/{ETAG}", False),  # If-Range needs a strong match
        ('"v1-10000x"', False),
        ('"V1-10000"', False),  # entity-tags are case-sensitive
        (MODIFIED_HTTP, True),
        ("Saturday, 14-Mar-26 15:09:26 GMT", True),
        ("Sat Mar 14 15:09:26 2026", True),
        ("Sat, 14 Mar 2026 15:09:27 GMT", False),  # a date must equal Last-Modified exactly
        ("Sat, 14 Mar 2026 15:09:25 GMT", False),
        ("garbage", False),
        ("", False),
    ],
)
def test_if_range_decides_between_206_and_200(if_range: str, honoured: bool) -> None:
    decision = evaluate(conditions(range="bytes=0-9", if_range=if_range), BOOK)
    assert decision == (PartialContent((ByteRange(0, 9, SIZE),)) if honoured else FullContent())


def test_if_range_that_fails_also_overrides_an_invalid_range() -> None:
    assert evaluate(conditions(range="bytes=abc", if_range='"old"'), BOOK) == FullContent()
    assert evaluate(conditions(range="bytes=abc", if_range=ETAG), BOOK) == RangeNotSatisfiable(SIZE)


def test_if_range_never_matches_a_weak_etag_of_ours() -> None:
    weak = Representation(size=SIZE, etag=f"W/{ETAG}", last_modified=MODIFIED)
    assert evaluate(conditions(range="bytes=0-9", if_range=f"W/{ETAG}"), weak) == FullContent()


def test_if_range_without_range_is_ignored() -> None:
    assert evaluate(conditions(if_range='"old"'), BOOK) == FullContent()


def test_conditions_come_from_request_headers() -> None:
    headers = {"range": "bytes=0-1", "if-range": ETAG, "if-none-match": "*", "if-modified-since": MODIFIED_HTTP}
    assert RequestConditions.from_headers(headers) == RequestConditions(
        range="bytes=0-1", if_range=ETAG, if_none_match="*", if_modified_since=MODIFIED_HTTP
    )


@pytest.mark.parametrize(
    "text",
    [
        "Sat, 14 Mar 2026 15:09:26 GMT",
        "Saturday, 14-Mar-26 15:09:26 GMT",
        "Sat Mar 14 15:09:26 2026",
    ],
)
def test_every_http_date_form_is_read(text: str) -> None:
    assert parse_http_date(text) == int(MODIFIED.replace(microsecond=0).timestamp())


@pytest.mark.parametrize(
    "text",
    [
        "Sat, 30 Feb 2026 15:09:26 GMT",
        "Sat, 14 Mar 2026 15:09:26 +0000",
        "2026-03-14T15:09:26Z",
        "Sat, 14 Mar 2026 25:09:26 GMT",
        "",
    ],
)
def test_what_is_not_an_http_date(text: str) -> None:
    assert parse_http_date(text) is None


def test_two_digit_years_pivot_like_nginx() -> None:
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0
    assert parse_http_date("Friday, 01-Jan-38 00:00:00 GMT") == int(datetime(2038, 1, 1, tzinfo=UTC).timestamp())


def test_validator_headers() -> None:
    assert validator_headers(BOOK) == {"etag": ETAG, "last-modified": MODIFIED_HTTP, "accept-ranges": "bytes"}
    assert http_date(MODIFIED.astimezone(timezone(timedelta(hours=2)))) == MODIFIED_HTTP
    assert quote_etag("abc") == '"abc"'
    assert quote_etag('"abc"') == '"abc"'
    assert quote_etag('W/"abc"') == 'W/"abc"'


def test_multipart_layout_is_nginx_byte_for_byte() -> None:
    size = 100_003
    ranges = (ByteRange(0, 0, size), ByteRange(size - 1, size - 1, size))
    layout = MultipartByteranges.build(ranges, "application/octet-stream", boundary="00000000000000000001")
    assert layout.content_type == "multipart/byteranges; boundary=00000000000000000001"
    first, last = (header for header, _ in layout.parts)
    assert first == (
        b"\r\n--00000000000000000001\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 0-0/100003\r\n\r\n"
    )
    assert last.endswith(b"Content-Range: bytes 100002-100002/100003\r\n\r\n")
    assert layout.closing == b"\r\n--00000000000000000001--\r\n"
    # nginx 1.22 answered "bytes=0-0,-1" on a file of this size with exactly this Content-Length.
    assert layout.content_length == 242
