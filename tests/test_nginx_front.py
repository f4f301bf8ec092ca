"""The shipped nginx template, run by Debian's nginx in front of two `audioverse run` processes.

TLS from a throwaway CA, streams handed to nginx by X-Accel-Redirect, playback links nginx checks and
serves itself (secure_link), uploads streamed through, the size and rate limits, and the client address
the API sees (only what its trusted proxy says).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import time
import wave
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
import trustme

from audioverse.config import Settings
from audioverse.signing import nginx_secure_link
from tests.listening.nginx import start_nginx
from tests.services import (
    MeilisearchServer,
    free_port,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    settings_environment,
    stop_process,
)
from tests.serving import AUDIOVERSE, Server, audioverse_run

pytestmark = pytest.mark.slow

TEMPLATE = Path(__file__).parents[1] / "nginx" / "audioverse.conf.template"
ADMIN = {"username_or_email": "front-admin", "password": "a long front door password"}
MAX_UPLOAD_MIB = 48
APP_AUTH_LIMIT = 5
"""Failed logins per address the API allows in its window; nginx lets more through (its burst is 10)."""
NGINX_START_SECONDS = 30
NGINX_AUTH_LIMIT_DETAIL = "Too many requests to /api/auth/ from this address; wait a moment."
SECURE_LINK_SECRET = "a secret nginx and the API share, never a client"


def render_template(values: dict[str, str]) -> str:
    """Fill ``${NGINX_*}`` as the nginx image's envsubst does; every one must be given."""
    text = TEMPLATE.read_text()
    named = set(re.findall(r"\$\{(NGINX_\w+)\}", text))
    assert named == set(values), f"template variables {sorted(named)} against given {sorted(values)}"
    return re.sub(r"\$\{(NGINX_\w+)\}", lambda match: values[match.group(1)], text)


@dataclass
class Front:
    https: str
    http: str
    tls: ssl.SSLContext
    apis: list[Server]
    nginx: subprocess.Popen[bytes]
    prefix: Path
    storage: Path

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text()

    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        """A client of nginx over HTTPS, connecting from loopback address ``source`` (127.0.0.0/8 all works)."""
        transport = httpx.HTTPTransport(verify=self.tls, local_address=source)
        return httpx.Client(base_url=self.https, transport=transport, timeout=60)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def wav(path: Path, mebibytes: int) -> Path:
    """A valid WAV of about ``mebibytes`` MiB of silence (16-bit mono, 44.1 kHz), written in seconds."""
    frames = mebibytes * 1024 * 1024 // 2
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(44100)
        chunk = b"\x00\x00" * 65536
        for _ in range(frames // 65536):
            audio.writeframes(chunk)
    return path


@pytest.fixture(scope="module")
async def front_settings(
    meilisearch: MeilisearchServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """The production profile on a database and Redis namespace of this module's own, audio on a local disk."""
    root = tmp_path_factory.mktemp("front")
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        yield msgspec.structs.replace(
            production_settings(
                root / "shared", database_url=database_url, namespace=namespace, meilisearch=meilisearch
            ),
            storage_local_dir=root / "storage",
            stream_accel_redirect_prefix="/_audio/",
            stream_secure_link_secret=SECURE_LINK_SECRET,
            auth_rate_limit=APP_AUTH_LIMIT,
            migrate_on_startup=False,
        )


@pytest.fixture(scope="module")
def front(front_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    root = tmp_path_factory.mktemp("front-processes")
    environment = settings_environment(front_settings)
    subprocess.run(
        [
            AUDIOVERSE,
            "users",
            "create-admin",
            "--email",
            "front@example.com",
            "--username",
            ADMIN["username_or_email"],
            "--password",
            ADMIN["password"],
        ],
        env={**os.environ, **environment},
        check=True,
        capture_output=True,
    )  # fmt: skip  (migrates the database once, before either API process starts)
    # Each API process has a data directory (and log) of its own; storage is shared through the setting.
    api_settings = {
        name.removeprefix("AUDIOVERSE_").lower(): value
        for name, value in environment.items()
        if name != "AUDIOVERSE_DATA_DIR"
    }
    ca = trustme.CA()
    prefix = root / "nginx"
    prefix.mkdir()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    certificate.private_key_pem.write_to_path(prefix / "key.pem")
    for position, pem in enumerate(certificate.cert_chain_pems):
        pem.write_to_path(prefix / "cert.pem", append=position > 0)
    https_port, http_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        apis = [stack.enter_context(audioverse_run(root / f"api-{n}", **api_settings)) for n in (1, 2)]
        (prefix / "audioverse.conf").write_text(
            render_template(
                {
                    "NGINX_SERVER_NAME": "localhost",
                    "NGINX_HTTP_PORT": f"127.0.0.1:{http_port}",
                    "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
                    "NGINX_TLS_CERTIFICATE": str(prefix / "cert.pem"),
                    "NGINX_TLS_CERTIFICATE_KEY": str(prefix / "key.pem"),
                    "NGINX_API_SERVERS": " ".join(f"server 127.0.0.1:{api.port};" for api in apis),
                    "NGINX_AUDIO_ROOT": str(front_settings.resolved_storage_dir),
                    "NGINX_MAX_UPLOAD": f"{MAX_UPLOAD_MIB}m",
                    "NGINX_AUTH_RATE": "5r/s",
                    "NGINX_AUTH_BURST": "10",
                    "NGINX_SECURE_LINK_SECRET": SECURE_LINK_SECRET,
                }
            )
        )
        nginx = start_nginx(prefix, "    default_type application/octet-stream;\n    include audioverse.conf;")
        stack.callback(stop_process, nginx, 10)
        tls = ssl.create_default_context()
        ca.configure_trust(tls)
        front = Front(
            https=f"https://localhost:{https_port}",
            http=f"http://127.0.0.1:{http_port}",
            tls=tls,
            apis=apis,
            nginx=nginx,
            prefix=prefix,
            storage=front_settings.resolved_storage_dir,
        )
        deadline = time.monotonic() + NGINX_START_SECONDS
        while True:
            assert nginx.poll() is None, front.error_log()
            assert time.monotonic() < deadline, f"nginx did not answer: {front.error_log()}"
            with contextlib.suppress(httpx.TransportError), front.client() as client:
                if client.get("/api/health").status_code == 200:
                    break
            time.sleep(0.2)
        yield front


def login(client: httpx.Client) -> dict[str, str]:
    response = client.post("/api/auth/login/", json=ADMIN)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_https_with_hsts_plain_http_redirects_and_json_is_gzipped(front: Front) -> None:
    with front.client() as client:
        health = client.get("/api/health")
        assert health.status_code == 200
        assert health.headers["strict-transport-security"].startswith("max-age=")
        schema = client.get("/api/schema/openapi.json", headers={"Accept-Encoding": "gzip"})
        assert schema.headers["content-encoding"] == "gzip"
        assert schema.json()["openapi"].startswith("3.1")  # httpx undid the gzip: the body is whole
    plain = httpx.get(f"{front.http}/api/health?x=1", follow_redirects=False)
    assert plain.status_code == 301
    assert plain.headers["location"] == "https://127.0.0.1/api/health?x=1"  # HTTPS on its standard port


def test_both_api_processes_take_requests(front: Front) -> None:
    with front.client() as client:
        for _ in range(20):
            assert client.get("/api/health").status_code == 200
    for api in front.apis:
        assert "path=/api/health" in api.log(), f"no request reached the API on port {api.port}"


def test_an_upload_streams_through_and_nginx_serves_the_stream_ranges_itself(front: Front, tmp_path: Path) -> None:
    audio = wav(tmp_path / "long.wav", 40)
    nginx_peak_before = peak_rss_kib(front.nginx.pid)
    with front.client() as client:
        headers = login(client)
        with audio.open("rb") as handle:
            created = client.post(
                "/api/audiobooks/", headers=headers, data={"title": "Through the front door", "authors": "Porter"},
                files={"audio": ("long.wav", handle, "audio/wav")},
            )  # fmt: skip
        assert created.status_code == 201, created.text
        # Streamed, not spooled: no temporary file (nginx warns of each) and nginx's peak memory grew by far
        # less than the 40 MiB that went through it.
        assert "buffered to a temporary file" not in front.error_log()
        assert peak_rss_kib(front.nginx.pid) - nginx_peak_before < 8 * 1024
        stored = next(front.storage.rglob("audio.wav"))
        original = audio.read_bytes()
        assert stored.read_bytes() == original
        stream = f"/api/audiobooks/{created.json()['id']}/stream/"
        ranged = client.get(stream, headers={**headers, "Range": "bytes=1000000-1999999"})
        assert ranged.status_code == 206, ranged.text
        assert ranged.content == original[1_000_000:2_000_000]
        assert ranged.headers["content-range"] == f"bytes 1000000-1999999/{len(original)}"
        assert "x-accel-redirect" not in ranged.headers  # nginx took the hand-off
        assert ranged.headers["server"].startswith("nginx")
        whole = client.get(stream, headers=headers)
        assert whole.status_code == 200
        assert whole.content == original
        # The hand-off's location is internal: a client cannot read storage through it.
        assert client.get(f"/_audio/{stored.relative_to(front.storage)}").status_code == 404


def test_a_playback_link_is_checked_and_served_by_nginx_alone(front: Front, tmp_path: Path) -> None:
    audio = wav(tmp_path / "short.wav", 2)
    with front.client() as client:
        headers = login(client)
        with audio.open("rb") as handle:
            created = client.post(
                "/api/audiobooks/", headers=headers, data={"title": "Linked", "authors": "Porter"},
                files={"audio": ("short.wav", handle, "audio/wav")},
            )  # fmt: skip
        assert created.status_code == 201, created.text
        playback = client.get(f"/api/audiobooks/{created.json()['id']}/playback/", headers=headers).json()
        link = playback["stream_url"]
        assert link.startswith("/media/")
        original = audio.read_bytes()
        starts = (0, 70000, 1000000)
        ranges = [client.get(link, headers={"Range": f"bytes={start}-{start + 65535}"}) for start in starts]
        assert [answer.status_code for answer in ranges] == [206, 206, 206]
        assert [answer.content for answer in ranges] == [original[start : start + 65536] for start in starts]
        assert ranges[0].headers["content-type"] == "audio/wav"
        assert ranges[0].headers["cache-control"] == "private, no-store"
        # No range reached the API: each of its answers carries the request id it logged.
        assert not any("x-request-id" in answer.headers for answer in ranges)
        assert "x-request-id" in client.get("/api/health").headers

        path, query = link.split("?", 1)
        tampered = client.get(f"{path}?{query.replace('md5=', 'md5=A', 1)}")
        assert (tampered.status_code, tampered.headers["content-type"]) == (403, "application/problem+json")
        assert "ask /playback/" in tampered.json()["detail"]
        # The signature covers the path: another path with this link's signature is refused before any lookup.
        assert client.get(f"{path}.copy?{query}").status_code == 403
        unsigned = client.get(path)
        assert unsigned.status_code == 403
        expired = nginx_secure_link(
            SECURE_LINK_SECRET, path.removeprefix("/media/"), datetime.now(UTC) - timedelta(seconds=1)
        )
        gone = client.get(expired)
        assert (gone.status_code, gone.json()["title"]) == (410, "Gone")


def test_an_upload_past_nginxs_limit_is_refused_before_its_body(front: Front) -> None:
    with front.client() as client:
        headers = login(client)
    too_big = (MAX_UPLOAD_MIB + 1) * 1024 * 1024
    port = int(front.https.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        front.tls.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            (
                f"POST /api/audiobooks/ HTTP/1.1\r\nHost: localhost\r\nAuthorization: {headers['Authorization']}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {too_big}\r\n\r\n"
            ).encode()
        )
        status_line = tls.recv(4096).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"


def test_nginx_limits_logins_per_address_with_a_problem_json_429(front: Front) -> None:
    def attempt(_: int) -> httpx.Response:
        with front.client(source="127.0.0.6") as client:
            return client.post("/api/auth/login/", json={"username_or_email": "nobody", "password": "wrong"})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(attempt, range(40)))
    limited = [answer for answer in answers if answer.status_code == 429]
    assert any(answer.json()["detail"] == NGINX_AUTH_LIMIT_DETAIL for answer in limited), [
        answer.status_code for answer in answers
    ]
    by_nginx = next(answer for answer in limited if answer.json()["detail"] == NGINX_AUTH_LIMIT_DETAIL)
    assert by_nginx.headers["content-type"] == "application/problem+json"
    assert by_nginx.headers["retry-after"] == "1"


def test_the_api_keys_its_limits_on_the_address_nginx_saw_and_no_other(front: Front) -> None:
    def wrong(account: str) -> dict[str, str]:
        # A new account name each time: the API also counts per account, and this test is about addresses.
        return {"username_or_email": account, "password": "not the password"}

    with front.client(source="127.0.0.3") as client:
        answers = [
            client.post("/api/auth/login/", json=wrong(f"nobody-{n}")).status_code for n in range(APP_AUTH_LIMIT + 1)
        ]
    # Every attempt reached the API (nginx's burst is larger), whose own limiter counted 127.0.0.3's.
    assert answers == [401] * APP_AUTH_LIMIT + [429]
    with front.client(source="127.0.0.4") as client:
        assert client.post("/api/auth/login/", json=wrong("somebody")).status_code == 401  # its own count
    # Straight to an API process from an address it does not trust as a proxy: the header is ignored,
    # so the attempt counts for 127.0.0.5, not for the 127.0.0.3 it names.
    direct = httpx.Client(
        base_url=front.apis[0].url, transport=httpx.HTTPTransport(local_address="127.0.0.5"), timeout=30
    )
    with direct:
        forged = direct.post("/api/auth/login/", json=wrong("anybody"), headers={"X-Forwarded-For": "127.0.0.3"})
    assert forged.status_code == 401
