"""RFC 9110 byte ranges and conditional GET, decided the way nginx decides them for static files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

# nginx's default is unlimited; a bound keeps a header of thousands of tiny ranges from turning one
# request into thousands of multipart parts. The differential test runs nginx with the same limit.
MAX_RANGES = 100
# nginx keeps offsets in a signed 64-bit off_t and answers 416 for any number that does not fit.
MAX_OFFSET = 2**63 - 1
RANGE_UNIT_PREFIX = "bytes="

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = r"(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
# The three HTTP-date forms of RFC 9110 §5.6.7: IMF-fixdate, the obsolete RFC 850 form, and asctime.
_HTTP_DATE_FORMS = (
    re.compile(rf"[A-Za-z]{{3}}, (?P<day>\d\d) {_MONTH} (?P<year>\d{{4}}) {_TIME} GMT"),
    re.compile(rf"[A-Za-z]{{6,9}}, (?P<day>\d\d)-{_MONTH}-(?P<year>\d\d) {_TIME} GMT"),
    re.compile(rf"[A-Za-z]{{3}} {_MONTH} (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})"),
)


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a representation of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


@dataclass(frozen=True, slots=True)
class Representation:
    """What the response describes: its length and its validators as header values."""

    size: int
    etag: str
    last_modified: datetime

    @property
    def last_modified_seconds(self) -> int:
        """HTTP dates have whole seconds, so every comparison uses the truncated time."""
        moment = self.last_modified if self.last_modified.tzinfo else self.last_modified.replace(tzinfo=UTC)
        return int(moment.timestamp())


@dataclass(frozen=True, slots=True)
class RequestConditions:
    """The request header fields that decide between 200, 206, 304 and 416."""

    range: str | None = None
    if_range: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RequestConditions:
        """Read the fields from request headers (Litestar's are case-insensitive; a plain dict needs lower case)."""
        return cls(
            range=headers.get("range"),
            if_range=headers.get("if-range"),
            if_none_match=headers.get("if-none-match"),
            if_modified_since=headers.get("if-modified-since"),
        )


@dataclass(frozen=True, slots=True)
class NotModified:
    """304: the client's cached copy is current."""


@dataclass(frozen=True, slots=True)
class FullContent:
    """200 with the whole representation: no Range, an unknown unit, a failed If-Range, or nginx declines."""


@dataclass(frozen=True, slots=True)
class PartialContent:
    """206 with one range, or ``multipart/byteranges`` with several, in the order the client asked."""

    ranges: tuple[ByteRange, ...]


@dataclass(frozen=True, slots=True)
class RangeNotSatisfiable:
    """416: the byte ranges are invalid or none of them overlaps the representation."""

    size: int

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


RangeDecision = FullContent | PartialContent | RangeNotSatisfiable
Decision = NotModified | RangeDecision


def quote_etag(tag: str) -> str:
    """The ``ETag`` header value for a storage tag; tags that are already entity-tags pass through."""
    if tag.startswith(('"', 'W/"')) and tag.endswith('"') and len(tag) >= 2:
        return tag
    return f'"{tag}"'


def http_date(moment: datetime) -> str:
    """IMF-fixdate, the form ``Last-Modified`` must be sent in (RFC 9110 §5.6.7)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return format_datetime(aware.astimezone(UTC), usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch of an HTTP-date in any of its three forms, or ``None`` if it is not one."""
    text = value.strip(" \t")
    for form in _HTTP_DATE_FORMS:
        match = form.fullmatch(text)
        if match is None:
            continue
        year = int(match["year"])
        if year < 100:
            # nginx's reading of a two-digit year; RFC 9110 leaves the pivot to the recipient.
            year += 2000 if year < 70 else 1900
        try:
            moment = datetime(
                year,
                _MONTHS.index(match["month"]) + 1,
                int(match["day"]),
                int(match["hour"]),
                int(match["minute"]),
                int(match["second"]),
                tzinfo=UTC,
            )
        except ValueError:
            return None
        return int(moment.timestamp())
    return None


def validator_headers(representation: Representation) -> dict[str, str]:
    """``ETag``, ``Last-Modified`` and ``Accept-Ranges``: sent with every 200, 206 and 304."""
    return {
        "etag": representation.etag,
        "last-modified": http_date(representation.last_modified),
        "accept-ranges": "bytes",
    }


def _opaque_tag(entity_tag: str) -> str:
    return entity_tag[2:] if entity_tag.startswith("W/") else entity_tag


def none_match(if_none_match: str, etag: str) -> bool:
    """Whether ``If-None-Match`` matches, by the weak comparison RFC 9110 §13.1.2 requires."""
    members = if_none_match.strip(" \t")
    if members == "*":
        return True
    ours = _opaque_tag(etag)
    return any(_opaque_tag(member.strip(" \t")) == ours for member in members.split(","))


def not_modified_since(if_modified_since: str, representation: Representation) -> bool:
    """Whether the representation has not changed since the date; an invalid date never matches."""
    since = parse_http_date(if_modified_since)
    return since is not None and representation.last_modified_seconds <= since


def if_range_holds(if_range: str, representation: Representation) -> bool:
    """Whether ``If-Range`` names the current representation: byte-equal strong ETag or equal date."""
    # Like nginx, a value ending in a quote is an entity-tag; a weak one never equals the strong tag.
    value = if_range.strip(" \t")
    if len(value) >= 2 and value.endswith('"'):
        return value == representation.etag and not representation.etag.startswith("W/")
    return parse_http_date(value) == representation.last_modified_seconds


def _skip_spaces(text: str, position: int) -> int:
    # nginx skips spaces, not tabs, inside a range set; a tab makes the header invalid.
    while position < len(text) and text[position] == " ":
        position += 1
    return position


def _read_number(text: str, position: int) -> tuple[int, int] | None:
    """The decimal number at ``position`` and the position after it; ``None`` if there is no digit."""
    end = position
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if end == position:
        return None
    significant = text[position:end].lstrip("0")
    # Anything longer than off_t's 19 digits is out of range; this also spares int() a number of
    # thousands of digits, which Python refuses to convert.
    if len(significant) > len(str(MAX_OFFSET)):
        return MAX_OFFSET + 1, end
    return int(significant or "0"), end


def _parse_spec(text: str, position: int, size: int) -> tuple[int, int, int] | None:
    """One range spec at ``position``: ``(start, end exclusive, position after it)``; ``None`` if invalid.

    Follows nginx's ngx_http_range_parse: spaces may surround numbers and the dash; an end past the
    representation is clamped; a spec must be followed by a comma or the end of the header.
    """
    position = _skip_spaces(text, position)
    if position < len(text) and text[position] == "-":
        suffix = _read_number(text, position + 1)
        if suffix is None or suffix[0] > MAX_OFFSET:
            return None
        suffix_length, position = suffix
        start, end_exclusive = max(size - suffix_length, 0), size
    else:
        first = _read_number(text, position)
        if first is None or first[0] > MAX_OFFSET:
            return None
        start, position = first
        position = _skip_spaces(text, position)
        if position >= len(text) or text[position] != "-":
            return None
        position = _skip_spaces(text, position + 1)
        if position >= len(text) or text[position] == ",":
            end_exclusive = size
        else:
            last = _read_number(text, position)
            if last is None or last[0] > MAX_OFFSET:
                return None
            last_byte, position = last
            end_exclusive = min(last_byte + 1, size)
    position = _skip_spaces(text, position)
    if position < len(text) and text[position] != ",":
        return None
    return start, end_exclusive, position


def parse_range(header: str | None, size: int, *, max_ranges: int = MAX_RANGES) -> RangeDecision:
    """Decide what a ``Range`` header asks of a representation of ``size`` bytes, as nginx does.

    Ranges are kept in the order asked and neither merged nor sorted. A spec that does not overlap
    the representation is dropped; if none is left the answer is 416. Several ranges that together
    are longer than the representation, or more than ``max_ranges`` of them, get the whole
    representation instead. Anything that breaks the grammar is 416.
    """
    text = (header or "").strip(" \t")
    # nginx needs at least one character after "bytes=" to treat the header as a byte range set.
    if len(text) <= len(RANGE_UNIT_PREFIX) or text[: len(RANGE_UNIT_PREFIX)].lower() != RANGE_UNIT_PREFIX:
        return FullContent()
    ranges: list[ByteRange] = []
    position = len(RANGE_UNIT_PREFIX) - 1
    while position < len(text):
        spec = _parse_spec(text, position + 1, size)
        if spec is None:
            return RangeNotSatisfiable(size)
        start, end_exclusive, position = spec
        if start < end_exclusive:
            ranges.append(ByteRange(start, end_exclusive - 1, size))
        # nginx gives up on ranges at once, before reading the rest of the header, when there are
        # too many or when the representation is empty ("0-" and "-5" reach here only then).
        if len(ranges) > max_ranges or start == end_exclusive == 0:
            return FullContent()
    if not ranges:
        return RangeNotSatisfiable(size)
    if sum(byte_range.length for byte_range in ranges) > size:
        # Overlapping ranges would send some bytes twice; nginx sends the representation once instead.
        return FullContent()
    return PartialContent(tuple(ranges))


def evaluate(conditions: RequestConditions, representation: Representation) -> Decision:
    """The answer to a GET or HEAD, in the order RFC 9110 §13.2.2 evaluates preconditions.

    Where nginx and the RFC part ways this follows the RFC: an If-None-Match makes If-Modified-Since
    irrelevant (nginx wants both to match). If-Match and If-Unmodified-Since (412) are not evaluated;
    they guard writes, and this only reads.
    """
    if conditions.if_none_match is not None:
        if none_match(conditions.if_none_match, representation.etag):
            return NotModified()
    elif conditions.if_modified_since is not None and not_modified_since(conditions.if_modified_since, representation):
        return NotModified()
    decision = parse_range(conditions.range, representation.size)
    if (
        not isinstance(decision, FullContent)
        and conditions.if_range is not None
        and not if_range_holds(conditions.if_range, representation)
    ):
        return FullContent()
    return decision


@dataclass(frozen=True, slots=True)
class MultipartByteranges:
    """The layout of a ``multipart/byteranges`` body, byte for byte as nginx writes it."""

    boundary: str
    parts: tuple[tuple[bytes, ByteRange], ...]
    closing: bytes

    @classmethod
    def build(cls, ranges: tuple[ByteRange, ...], content_type: str, boundary: str) -> MultipartByteranges:
        parts = tuple(
            (
                (
                    f"\r\n--{boundary}\r\n"
                    f"Content-Type: {content_type}\r\n"
                    f"Content-Range: {byte_range.content_range}\r\n\r\n"
                ).encode("latin-1"),
                byte_range,
            )
            for byte_range in ranges
        )
        return cls(boundary=boundary, parts=parts, closing=f"\r\n--{boundary}--\r\n".encode("latin-1"))

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        return sum(len(header) + byte_range.length for header, byte_range in self.parts) + len(self.closing)
