"""Benchmark: the app serving audio itself, nginx serving the same file, and the app handing off to nginx.

Run: uv run python -m bench.stream_throughput [--mib 200] [--ranges 400] [--rounds 3].
Writes bench/results/stream_throughput.json.

curl is the client (a Python client tops out below nginx and hid the gap): 1 MiB ranges at random
offsets, all over one keep-alive connection, and whole-file GETs, against the app's signed stream URL
(what an ``<audio src>`` fetches) and against nginx serving the file directly (``tests/listening/nginx.py``).
The third contender is the production hand-off: a second ``audioverse run`` with
``AUDIOVERSE_STREAM_ACCEL_REDIRECT_PREFIX=/_audio/`` behind an nginx holding the upstream, stream and
``/_audio/`` blocks of ``nginx/audioverse.conf.template`` in a plain-HTTP server (its HTTPS server would add
TLS, which the direct nginx does not pay): every request, range or whole, goes to the app to check the
signed URL, then nginx serves the bytes. Its CPU is reported per process (app, nginx) and in total.
The fourth is the same nginx given the link ``/playback/`` hands out with
``AUDIOVERSE_STREAM_SECURE_LINK_SECRET`` (the template's ``/media/`` block): nginx checks it, no app.
Server CPU per request is read from ``/proc/<pid>/stat`` (utime + stime of the server and its children)
before and after, so it holds on a shared machine where wall-clock rates do not. Rounds alternate
between the servers and the best rate of each is kept. The app's RSS is sampled during whole GETs.
Goals (issue 16): ≤ 2 ms of server CPU per range request and at least 0.6 of nginx's rate for ranges and whole GETs
from the app itself; at least 0.9 of nginx's rate on both through the hand-off (or the secure link).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from audioverse.catalog.models import Audiobook
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from audioverse.signing import nginx_secure_link
from bench.common import ROOT, RssSampler, create_admin, login, rss_bytes, running_service, wait_until_ready
from tests.listening.nginx import START_TIMEOUT_SECONDS, NginxServer, run_nginx, start_nginx
from tests.services import free_port, stop_process

MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WHOLE_GETS = 5
WARM_UP_REQUESTS = 20
RESULT = ROOT / "bench" / "results" / "stream_throughput.json"
TEMPLATE = ROOT / "nginx" / "audioverse.conf.template"
HAND_OFF_PREFIX = "/_audio/"
HAND_OFF_BLOCKS = (
    "upstream audioverse_api",
    "location ~ ^/api/audiobooks/[0-9]+/stream/?$",
    "location /_audio/",
    "location /media/",
    "location @link_refused",
    "location @link_expired",
)
SECURE_LINK_SECRET = "the bench's secret, shared by nginx and the link"


def cpu_seconds(pid: int) -> float:
    """CPU seconds (utime + stime) of ``pid`` and its descendants (uvicorn may be a child of ``audioverse run``)."""
    stats: dict[int, tuple[int, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid …": the command may hold spaces, so split after the last ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    tree, total = {pid}, 0.0
    grew = True
    while grew:
        grew = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    for member in tree:
        total += stats.get(member, (0, 0.0))[1]
    return total


def hand_off_site(port: int, api: str, audio_root: Path) -> str:
    """The template's upstream, stream and ``/_audio/`` blocks as they ship, in a plain-HTTP server on ``port``."""
    template = TEMPLATE.read_text()
    blocks = []
    for opening in HAND_OFF_BLOCKS:
        # Each block closes at its own indentation; none holds a nested one.
        found = re.search(rf"^( *){re.escape(opening)} \{{\n.*?^\1\}}$", template, re.MULTILINE | re.DOTALL)
        if found is None:
            raise RuntimeError(f"{TEMPLATE} has no `{opening} {{ … }}` block")
        blocks.append(found.group(0))
    upstream, stream, audio, *secure_link = blocks
    # The template's server-level proxy settings (keep-alive to the upstream among them) the locations inherit.
    site = f"""
{upstream}
server {{
    listen 127.0.0.1:{port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;
    location / {{
        proxy_pass http://audioverse_api;
    }}
{stream}
{audio}
{chr(10).join(secure_link)}
}}
"""
    values = {
        "NGINX_API_SERVERS": f"server {api};",
        "NGINX_AUDIO_ROOT": str(audio_root),
        "NGINX_SECURE_LINK_SECRET": SECURE_LINK_SECRET,
    }
    return re.sub(r"\$\{(NGINX_\w+)\}", lambda match: values[match.group(1)], site)


@contextmanager
def nginx_handing_off(prefix: Path, api: str, audio_root: Path) -> Iterator[NginxServer]:
    """An nginx in front of the app at ``api`` (host:port), serving what it hands off from ``audio_root``."""
    port = free_port()
    server = NginxServer(
        url=f"http://127.0.0.1:{port}", process=start_nginx(prefix, hand_off_site(port, api, audio_root)), prefix=prefix
    )
    try:
        try:
            wait_until_ready(server.url, START_TIMEOUT_SECONDS)  # through nginx to the app
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; nginx's error log: {server.error_log()}") from exc
        yield server
    finally:
        stop_process(server.process, 10)


@dataclass(frozen=True)
class Run:
    """One curl invocation: its transfers over one connection, the wall time and each server process's CPU time."""

    requests: int
    seconds: float
    cpu_seconds_by_server: dict[str, float]
    bytes: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_ms_per_request(*self.cpu_seconds_by_server)

    def server_cpu_ms_per_request(self, *servers: str) -> float:
        return sum(self.cpu_seconds_by_server[server] for server in servers) * 1000 / self.requests

    @property
    def mib_per_second(self) -> float:
        return self.bytes / MIB / self.seconds


def curl(server_pids: Mapping[str, int], url: str, ranges: list[str | None], workdir: Path) -> Run:
    """Fetch ``url`` once per entry of ``ranges`` (``None``: the whole file) in one curl, so one connection.

    ``server_pids`` names the processes that serve it, whose CPU time is measured.
    """
    config = workdir / "curl.config"
    with config.open("w") as handle:
        for index, byte_range in enumerate(ranges):
            if index:
                handle.write("next\n")
            handle.write(f'url = "{url}"\noutput = "/dev/null"\n')
            handle.write('write-out = "%{http_code} %{size_download} %{num_connects}\\n"\n')
            if byte_range is not None:
                handle.write(f'range = "{byte_range}"\n')
    cpu_before = {server: cpu_seconds(pid) for server, pid in server_pids.items()}
    started = time.perf_counter()
    command = ["curl", "--silent", "--config", str(config)]
    completed = subprocess.run(command, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu = {server: cpu_seconds(pid) - cpu_before[server] for server, pid in server_pids.items()}
    lines = completed.stdout.split()
    statuses, sizes, connects = lines[0::3], [int(size) for size in lines[1::3]], [int(n) for n in lines[2::3]]
    wanted = "200" if ranges[0] is None else "206"
    if completed.returncode or len(statuses) != len(ranges) or set(statuses) != {wanted}:
        raise RuntimeError(f"curl {completed.returncode}: {completed.stderr[-500:]} statuses {set(statuses)}")
    if sum(connects) != 1:
        raise RuntimeError(f"curl opened {sum(connects)} connections, not one")
    return Run(requests=len(ranges), seconds=seconds, cpu_seconds_by_server=cpu, bytes=sum(sizes))


def random_ranges(count: int, size: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    starts = (rng.randrange(0, size - MIB) for _ in range(count))
    return [f"{start}-{start + MIB - 1}" for start in starts]


async def add_book(settings: Settings, key: str, size: int) -> int:
    database = sqlalchemy_config(settings)
    await migrate_to_head(database)
    async with database.get_session() as session:
        book = Audiobook(
            title="Benchmark", duration_seconds=3600, language="en", format="mp3", mime_type="audio/mpeg",
            size_bytes=size, bitrate=0, audio_key=key, average_rating=Decimal("0"),
        )  # fmt: skip
        session.add(book)
        await session.commit()
        book_id = book.id
    await database.get_engine().dispose()
    return book_id


def summary(runs: list[Run], *, rate: str) -> dict[str, float]:
    """The best rate, and the median server CPU per request: in total, and per process when there are several."""
    best = max(runs, key=lambda run: run.per_second)
    result = {
        rate: round(best.mib_per_second if rate == "mib_s" else best.per_second, 1),
        "server_cpu_ms_per_request": round(statistics.median(run.cpu_ms_per_request for run in runs), 3),
    }
    servers = list(runs[0].cpu_seconds_by_server)
    if len(servers) > 1:
        for server in servers:
            per_request = statistics.median(run.server_cpu_ms_per_request(server) for run in runs)
            result[f"{server}_cpu_ms_per_request"] = round(per_request, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=200, help="size of the audio file")
    parser.add_argument("--ranges", type=int, default=400, help="1 MiB range requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-level", default="INFO", help="the app's; INFO logs a line per request")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    load_before = os.getloadavg()
    contenders = ("nginx", "app", "hand_off", "secure_link")
    runs: dict[str, list[Run]] = {f"{name}_{workload}": [] for name in contenders for workload in ("ranges", "whole")}
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch:
        root = Path(scratch)
        data_dir = root / "var"
        key = "audiobooks/bench/audio.mp3"
        audio = data_dir / "storage" / key
        audio.parent.mkdir(parents=True)
        with audio.open("wb") as handle:
            for _ in range(args.mib):
                handle.write(os.urandom(MIB))
        size = audio.stat().st_size
        book_id = asyncio.run(add_book(Settings(data_dir=data_dir), key, size))
        # The hand-off's app has a database of its own (the same book id) and reads the same storage.
        hand_off_dir = root / "hand-off"
        hand_off_dir.mkdir()
        hand_off_book_id = asyncio.run(add_book(Settings(data_dir=hand_off_dir), key, size))
        with (
            run_nginx(audio.parent, root / "nginx", content_type="audio/mpeg") as nginx,
            running_service(data_dir, log_level=args.log_level) as (base, process),
            running_service(
                hand_off_dir,
                log_level=args.log_level,
                stream_accel_redirect_prefix=HAND_OFF_PREFIX,
                storage_local_dir=str(data_dir / "storage"),
            ) as (hand_off_base, hand_off_process),
            nginx_handing_off(
                root / "nginx-hand-off", hand_off_base.removeprefix("http://"), data_dir / "storage"
            ) as front,
        ):
            playback = httpx.get(
                f"{base}/api/audiobooks/{book_id}/playback/", headers=login(base, *create_admin(data_dir))
            )
            playback.raise_for_status()
            hand_off_playback = httpx.get(
                f"{front.url}/api/audiobooks/{hand_off_book_id}/playback/",
                headers=login(front.url, *create_admin(hand_off_dir)),
            )
            hand_off_playback.raise_for_status()
            hand_off_url = hand_off_playback.json()["stream_url"]
            # Asked directly, the app answers with the hand-off alone: through nginx, nginx sends the bytes.
            handed = httpx.get(hand_off_base + hand_off_url, headers={"Range": "bytes=0-0"})
            if handed.headers.get("x-accel-redirect") != HAND_OFF_PREFIX + key or handed.content:
                raise RuntimeError(f"the app did not hand off: {handed.status_code} {handed.headers}")
            servers = {
                "nginx": ({"nginx": nginx.process.pid}, f"{nginx.url}/audio.mp3"),
                "app": ({"app": process.pid}, base + playback.json()["stream_url"]),
                "hand_off": (
                    {"app": hand_off_process.pid, "nginx": front.process.pid},
                    front.url + hand_off_url,
                ),
                # What /playback/ hands out with AUDIOVERSE_STREAM_SECURE_LINK_SECRET: nginx alone checks it.
                "secure_link": (
                    {"app": hand_off_process.pid, "nginx": front.process.pid},
                    front.url + nginx_secure_link(SECURE_LINK_SECRET, key, datetime.now(UTC) + timedelta(hours=1)),
                ),
            }
            for pids, url in servers.values():
                curl(pids, url, random_ranges(WARM_UP_REQUESTS, size, seed=0), root)
                curl(pids, url, [None], root)  # the page cache holds the file from here on
            baseline = peak = rss_bytes(process.pid)
            for round_number in range(args.rounds):
                ranges = random_ranges(args.ranges, size, seed=round_number + 1)
                for name, (pids, url) in servers.items():
                    runs[f"{name}_ranges"].append(curl(pids, url, ranges, root))
                for name, (pids, url) in servers.items():
                    with RssSampler(process.pid) as sampler:
                        runs[f"{name}_whole"].append(curl(pids, url, [None] * WHOLE_GETS, root))
                    if name == "app":
                        peak = max(peak, sampler.peak)
    load_after = os.getloadavg()
    for name in contenders:
        assert all(run.bytes == size * WHOLE_GETS for run in runs[f"{name}_whole"]), name
    ranged = {name: summary(runs[f"{name}_ranges"], rate="per_s") for name in contenders}
    whole = {name: summary(runs[f"{name}_whole"], rate="mib_s") for name in contenders}
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "client": "curl, one keep-alive connection per run",
        "file_mib": args.mib,
        "app_log_level": args.log_level,
        "rounds": args.rounds,
        "load_average_1_5_15_before": [round(load, 2) for load in load_before],
        "load_average_1_5_15_after": [round(load, 2) for load in load_after],
        "hand_off_setup": f"the app with AUDIOVERSE_STREAM_ACCEL_REDIRECT_PREFIX={HAND_OFF_PREFIX} behind nginx: "
        f"{', '.join(HAND_OFF_BLOCKS)} of nginx/audioverse.conf.template, plain HTTP",
        "ranges_1mib": {
            "requests_per_round": args.ranges,
            "nginx": ranged["nginx"],
            "app": ranged["app"],
            "app_to_nginx_rate": round(ranged["app"]["per_s"] / ranged["nginx"]["per_s"], 3),
            "hand_off": ranged["hand_off"],
            "hand_off_to_nginx_rate": round(ranged["hand_off"]["per_s"] / ranged["nginx"]["per_s"], 3),
            "secure_link": ranged["secure_link"],
            "secure_link_to_nginx_rate": round(ranged["secure_link"]["per_s"] / ranged["nginx"]["per_s"], 3),
        },
        "whole_file_gets": {
            "gets_per_round": WHOLE_GETS,
            "nginx": whole["nginx"],
            "app": whole["app"],
            "app_to_nginx_rate": round(whole["app"]["mib_s"] / whole["nginx"]["mib_s"], 3),
            "hand_off": whole["hand_off"],
            "hand_off_to_nginx_rate": round(whole["hand_off"]["mib_s"] / whole["nginx"]["mib_s"], 3),
            "secure_link": whole["secure_link"],
            "secure_link_to_nginx_rate": round(whole["secure_link"]["mib_s"] / whole["nginx"]["mib_s"], 3),
        },
        "app_rss_baseline_mib": round(baseline / MIB, 1),
        "app_rss_peak_while_streaming_mib": round(peak / MIB, 1),
        "app_rss_growth_mib": round((peak - baseline) / MIB, 1),
    }
    print(json.dumps(result, indent=2))
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
