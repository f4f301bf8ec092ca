"""The app's streaming answers Range and conditional requests as nginx does for the same static file."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, route
from litestar.params import FromPath
from litestar.testing import AsyncTestClient

from audioverse.errors import problem_details_plugin
from audioverse.listening.ranges import MAX_RANGES
from audioverse.listening.streaming import stream_object
from audioverse.storage import LocalStorage
from tests.listening.nginx import NginxServer, run_nginx

pytestmark = pytest.mark.slow

CONTENT_TYPE = "audio/mpeg"
AUDIO = random.Random(9110).randbytes(100_003)
FILES = {"audio.mp3": AUDIO, "empty.mp3": b"", "one.mp3": b"\x7f"}
SMALL_CHUNK = 4096

MANY_RANGES = ",".join(f"{offset}-{offset}" for offset in range(0, 2 * MAX_RANGES, 2))
TOO_MANY_RANGES = MANY_RANGES + f",{2 * MAX_RANGES}-{2 * MAX_RANGES}"


@dataclass(frozen=True)
class Case:
    id: str
    headers: dict[str, str]
    path: str = "/audio.mp3"


def case(case_id: str, path: str = "/audio.mp3", **headers: str) -> Case:
    return Case(case_id, {name.replace("_", "-"): value for name, value in headers.items()}, path)


# Header values may name each server's own validators: {etag}, {last_modified} and variants of them.
CASES = [
    case("no-range"),
    case("first-500", Range="bytes=0-499"),
    case("open-ended", Range="bytes=500-"),
    case("suffix", Range="bytes=-500"),
    case("end-past-size-clamped", Range="bytes=0-999999"),
    case("last-byte", Range="bytes=100002-"),
    case("start-at-size", Range="bytes=100003-"),
    case("start-past-size", Range="bytes=200000-300000"),
    case("suffix-longer-than-file", Range="bytes=-200000"),
    case("reversed", Range="bytes=5-2"),
    case("letters", Range="bytes=abc"),
    case("suffix-zero", Range="bytes=-0"),
    case("empty-set", Range="bytes="),
    case("double-dash", Range="bytes=--1"),
    case("dash-only", Range="bytes=-"),
    case("no-dash", Range="bytes=0"),
    case("two-dashes", Range="bytes=1-2-3"),
    case("unknown-unit", Range="items=0-5"),
    case("unit-upper-case", Range="BYTES=0-5"),
    case("space-before-equals", Range="bytes = 0-5"),
    case("spaces-inside-spec", Range="bytes= 0 - 5"),
    case("tab-between-specs", Range="bytes=0-5,\t10-20"),
    case("trailing-comma", Range="bytes=0-5,"),
    case("empty-list-member", Range="bytes=0-5,,7-9"),
    case("leading-comma", Range="bytes=,0-5"),
    case("parameter", Range="bytes=0-5;x"),
    case("plus-sign", Range="bytes=+5-6"),
    case("leading-zeros", Range="bytes=05-06"),
    case("largest-offset", Range="bytes=0-9223372036854775807"),
    case("offset-overflow", Range="bytes=0-9223372036854775808"),
    case("start-overflow", Range="bytes=99999999999999999999-"),
    case("thousands-of-leading-zeros", Range=f"bytes={'0' * 3000}7-{'0' * 3000}8"),
    case("thousands-of-digits", Range=f"bytes=0-{'9' * 3000}"),
    case("first-and-last-byte", Range="bytes=0-0,-1"),
    case("spaces-around-comma", Range="bytes=0-5 , 10-20"),
    case("overlapping-shorter-than-file", Range="bytes=0-50000,40000-60000"),
    case("overlapping-longer-than-file", Range="bytes=0-60000,40000-90000"),
    case("order-kept", Range="bytes=10-20,0-5"),
    case("same-byte-twice", Range="bytes=0-0,0-0"),
    case("unsatisfiable-spec-dropped", Range="bytes=0-10,200000-300000"),
    case("reversed-spec-dropped", Range="bytes=5-2,0-5"),
    case("zero-suffix-dropped", Range="bytes=0-1,-0"),
    case("invalid-spec-after-valid", Range="bytes=0-5,abc"),
    case("max-ranges", Range=MANY_RANGES),
    case("more-than-max-ranges", Range=TOO_MANY_RANGES),
    case("empty-file", "/empty.mp3"),
    case("empty-file-open-ended", "/empty.mp3", Range="bytes=0-"),
    case("empty-file-start-one", "/empty.mp3", Range="bytes=1-"),
    case("empty-file-suffix", "/empty.mp3", Range="bytes=-1"),
    case("empty-file-zero-then-garbage", "/empty.mp3", Range="bytes=0-,abc"),
    case("empty-file-letters", "/empty.mp3", Range="bytes=abc"),
    case("one-byte", "/one.mp3", Range="bytes=0-0"),
    case("one-byte-suffix-longer", "/one.mp3", Range="bytes=-5"),
    case("one-byte-start-past", "/one.mp3", Range="bytes=1-"),
    case("one-byte-suffix-zero", "/one.mp3", Range="bytes=-0"),
    case("one-byte-twice", "/one.mp3", Range="bytes=0-0,0-0"),
    case("if-range-etag", Range="bytes=0-9", If_Range="{etag}"),
    case("if-range-weak-etag", Range="bytes=0-9", If_Range="W/{etag}"),
    case("if-range-other-etag", Range="bytes=0-9", If_Range='"other"'),
    case("if-range-date", Range="bytes=0-9", If_Range="{last_modified}"),
    case("if-range-later-date", Range="bytes=0-9", If_Range="{last_modified_later}"),
    case("if-range-earlier-date", Range="bytes=0-9", If_Range="{last_modified_earlier}"),
    case("if-range-rfc850-date", Range="bytes=0-9", If_Range="{last_modified_rfc850}"),
    case("if-range-asctime-date", Range="bytes=0-9", If_Range="{last_modified_asctime}"),
    case("if-range-garbage", Range="bytes=0-9", If_Range="garbage"),
    case("if-range-empty", Range="bytes=0-9", If_Range=""),
    case("if-range-multipart", Range="bytes=0-9,20-29", If_Range="{etag}"),
    case("if-range-fails-invalid-range", Range="bytes=abc", If_Range='"other"'),
    case("if-range-holds-invalid-range", Range="bytes=abc", If_Range="{etag}"),
    case("if-range-without-range", If_Range="{etag}"),
    case("if-none-match", If_None_Match="{etag}"),
    case("if-none-match-weak", If_None_Match="W/{etag}"),
    case("if-none-match-star", If_None_Match="*"),
    case("if-none-match-list", If_None_Match='"a", {etag},"b"'),
    case("if-none-match-other", If_None_Match='"other"'),
    case("if-none-match-unquoted", If_None_Match="{etag_unquoted}"),
    case("if-none-match-with-range", If_None_Match="{etag}", Range="bytes=0-9"),
    case("if-modified-since-same", If_Modified_Since="{last_modified}"),
    case("if-modified-since-later", If_Modified_Since="{last_modified_later}"),
    case("if-modified-since-earlier", If_Modified_Since="{last_modified_earlier}"),
    case("if-modified-since-asctime", If_Modified_Since="{last_modified_asctime}"),
    case("if-modified-since-garbage", If_Modified_Since="garbage"),
    case("if-modified-since-with-range", If_Modified_Since="{last_modified}", Range="bytes=0-9"),
    case("if-none-match-fails-over-date", If_None_Match='"other"', If_Modified_Since="{last_modified}"),
]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True)
class Part:
    content_type: str
    content_range: str
    data: bytes


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("static")
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def nginx(static_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    prefix = tmp_path_factory.mktemp("nginx")
    # "before" is RFC 9110's If-Modified-Since (not modified at or after the date); nginx's default
    # "exact" only matches the very same second.
    with run_nginx(
        static_root, prefix, content_type=CONTENT_TYPE, max_ranges=MAX_RANGES, if_modified_since="before"
    ) as server:
        yield server


class RecordingStorage(LocalStorage):
    """Local storage that remembers the size of every chunk it hands out."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.chunk_sizes: list[int] = []

    async def read_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = SMALL_CHUNK
    ) -> AsyncIterator[bytes]:
        async for chunk in super().read_range(key, start, end, chunk_size):
            self.chunk_sizes.append(len(chunk))
            yield chunk


def streaming_app(storage: LocalStorage) -> Litestar:

    @route("/{name:str}", http_method=["GET", "HEAD"])
    async def serve(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
        return await stream_object(
            storage,
            name,
            method=request.method,
            headers=request.headers,
            content_type=CONTENT_TYPE,
            chunk_size=SMALL_CHUNK,
        )

    return Litestar(route_handlers=[serve], plugins=[problem_details_plugin()])


@pytest.fixture(scope="module")
async def app_client(static_root: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=streaming_app(LocalStorage(static_root))) as client:
        yield client


@pytest.fixture(scope="module")
async def nginx_client(nginx: NginxServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=nginx.url) as client:
        yield client


async def ask(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> Answer:
    response = await client.request(method, path, headers=headers)
    return Answer(response.status_code, response.headers, response.content)


async def validators(client: httpx.AsyncClient, path: str) -> dict[str, str]:
    """The values a case's headers may name, taken from the server's own first answer."""
    first = await client.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    modified = parsedate_to_datetime(first.headers["last-modified"])
    return {
        "etag": etag,
        "etag_unquoted": etag.strip('"'),
        "last_modified": first.headers["last-modified"],
        "last_modified_later": format_datetime(modified + timedelta(seconds=1), usegmt=True),
        "last_modified_earlier": format_datetime(modified - timedelta(seconds=1), usegmt=True),
        "last_modified_rfc850": modified.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
        "last_modified_asctime": modified.strftime("%a %b %e %H:%M:%S %Y"),
    }


def multipart_parts(answer: Answer) -> list[Part]:
    """Parse a multipart/byteranges body strictly, reading each part by the length its Content-Range gives."""
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", answer.headers["content-type"])
    assert match, answer.headers["content-type"]
    delimiter = b"\r\n--" + match.group(1).encode()
    body = answer.body
    parts: list[Part] = []
    while True:
        assert body.startswith(delimiter), body[:80]
        body = body[len(delimiter) :]
        if body == b"--\r\n":
            return parts
        head, separator, body = body.partition(b"\r\n\r\n")
        assert separator
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        range_match = re.fullmatch(r"bytes (\d+)-(\d+)/\d+", fields["Content-Range"])
        assert range_match, fields
        length = int(range_match.group(2)) - int(range_match.group(1)) + 1
        parts.append(Part(fields["Content-Type"], fields["Content-Range"], body[:length]))
        body = body[length:]


def assert_same_answer(method: str, app: Answer, nginx: Answer) -> None:
    assert app.status == nginx.status
    if app.status == 416:
        assert app.headers["content-range"] == nginx.headers["content-range"]
        assert app.headers["content-type"] == "application/problem+json"
        return
    if app.status == 304:
        assert app.body == nginx.body == b""
        assert "content-range" not in app.headers
        return
    if nginx.headers["content-type"].startswith("multipart/byteranges"):
        assert app.headers["content-type"].startswith("multipart/byteranges")
        assert "content-range" not in app.headers
        if method == "GET":
            assert multipart_parts(app) == multipart_parts(nginx)
            assert int(app.headers["content-length"]) == len(app.body)
        return
    assert app.headers["content-type"] == nginx.headers["content-type"] == CONTENT_TYPE
    assert app.headers.get("content-range") == nginx.headers.get("content-range")
    assert app.headers["content-length"] == nginx.headers["content-length"]
    assert app.body == nginx.body
    assert app.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_app_answers_like_nginx(
    case: Case, method: str, app_client: AsyncTestClient[Litestar], nginx_client: httpx.AsyncClient
) -> None:
    app_values = await validators(app_client, case.path)
    nginx_values = await validators(nginx_client, case.path)
    app = await ask(app_client, method, case.path, {k: v.format(**app_values) for k, v in case.headers.items()})
    nginx = await ask(nginx_client, method, case.path, {k: v.format(**nginx_values) for k, v in case.headers.items()})
    assert_same_answer(method, app, nginx)
    if method == "HEAD" and app.status != 416:
        assert app.body == nginx.body == b""


async def test_multipart_body_length_matches_header_byte_for_byte(app_client: AsyncTestClient[Litestar]) -> None:
    response = await app_client.get("/audio.mp3", headers={"Range": "bytes=0-0,-1,500-600"})
    assert response.status_code == 206
    assert int(response.headers["content-length"]) == len(response.content)
    answer = Answer(response.status_code, response.headers, response.content)
    assert [part.data for part in multipart_parts(answer)] == [AUDIO[:1], AUDIO[-1:], AUDIO[500:601]]
    assert {part.content_type for part in multipart_parts(answer)} == {CONTENT_TYPE}


async def test_validators_are_sent_with_200_206_and_304(app_client: AsyncTestClient[Litestar]) -> None:
    whole = await app_client.get("/audio.mp3")
    partial = await app_client.get("/audio.mp3", headers={"Range": "bytes=0-9"})
    cached = await app_client.get("/audio.mp3", headers={"If-None-Match": whole.headers["etag"]})
    assert (whole.status_code, partial.status_code, cached.status_code) == (200, 206, 304)
    for response in (whole, partial, cached):
        assert response.headers["etag"] == whole.headers["etag"]
        assert response.headers["last-modified"] == whole.headers["last-modified"]
        assert response.headers["accept-ranges"] == "bytes"
    assert re.fullmatch(r'"[^"]+"', whole.headers["etag"])


async def test_missing_file_is_404_problem(app_client: AsyncTestClient[Litestar]) -> None:
    response = await app_client.get("/missing.mp3", headers={"Range": "bytes=0-9"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_bytes_leave_storage_in_bounded_chunks(static_root: Path) -> None:
    storage = RecordingStorage(static_root)
    async with AsyncTestClient(app=streaming_app(storage)) as client:
        whole = await client.get("/audio.mp3")
        parts = await client.get("/audio.mp3", headers={"Range": "bytes=0-50000,60000-"})
    assert whole.content == AUDIO
    assert parts.status_code == 206
    assert sum(storage.chunk_sizes) == len(AUDIO) + 50001 + len(AUDIO) - 60000
    assert max(storage.chunk_sizes) <= SMALL_CHUNK


async def test_head_answers_without_reading_the_file(static_root: Path) -> None:
    storage = RecordingStorage(static_root)
    async with AsyncTestClient(app=streaming_app(storage)) as client:
        whole = await client.head("/audio.mp3")
        partial = await client.head("/audio.mp3", headers={"Range": "bytes=-10"})
    assert (whole.status_code, whole.headers["content-length"], whole.content) == (200, str(len(AUDIO)), b"")
    assert partial.headers["content-range"] == f"bytes {len(AUDIO) - 10}-{len(AUDIO) - 1}/{len(AUDIO)}"
    assert storage.chunk_sizes == []


async def test_unsatisfiable_range_is_a_problem_with_the_size(app_client: AsyncTestClient[Litestar]) -> None:
    response = await app_client.get("/audio.mp3", headers={"Range": "bytes=200000-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(AUDIO)}"
    assert response.json()["type"].endswith("/range-not-satisfiable")
