"""Benchmark: the app serving audio ranges itself (embedded profile) beside nginx serving the same file.

Run: uv run python -m bench.stream_throughput [--mib 200] [--ranges 400] [--rounds 3].
Writes bench/results/stream_throughput.json.

curl is the client (a Python client tops out below nginx and hid the gap): 1 MiB ranges at random
offsets, all over one keep-alive connection, and whole-file GETs, against the app's signed stream URL
(what an ``<audio src>`` fetches) and against nginx serving the file directly (``tests/listening/nginx.py``).
Server CPU per request is read from ``/proc/<pid>/stat`` (utime + stime of the server and its children)
before and after, so it holds on a shared machine where wall-clock rates do not. Rounds alternate
between the two servers and the best rate of each is kept. The app's RSS is sampled during whole GETs.
Goals (issue 16): ≤ 2 ms of server CPU per range request and at least 0.6 of nginx's rate for ranges and whole GETs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from audioverse.catalog.models import Audiobook
from audioverse.config import Settings
from audioverse.db import migrate_to_head, sqlalchemy_config
from bench.common import ROOT, RssSampler, create_admin, login, rss_bytes, running_service
from tests.listening.nginx import run_nginx

MIB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WHOLE_GETS = 5
WARM_UP_REQUESTS = 20
RESULT = ROOT / "bench" / "results" / "stream_throughput.json"


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


@dataclass(frozen=True)
class Run:
    """One curl invocation: its transfers over one connection, the wall time and the server's CPU time."""

    requests: int
    seconds: float
    cpu_seconds: float
    bytes: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / self.requests

    @property
    def mib_per_second(self) -> float:
        return self.bytes / MIB / self.seconds


def curl(server_pid: int, url: str, ranges: list[str | None], workdir: Path) -> Run:
    """Fetch ``url`` once per entry of ``ranges`` (``None``: the whole file) in one curl, so one connection."""
    config = workdir / "curl.config"
    with config.open("w") as handle:
        for index, byte_range in enumerate(ranges):
            if index:
                handle.write("next\n")
            handle.write(f'url = "{url}"\noutput = "/dev/null"\n')
            handle.write('write-out = "%{http_code} %{size_download} %{num_connects}\\n"\n')
            if byte_range is not None:
                handle.write(f'range = "{byte_range}"\n')
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    command = ["curl", "--silent", "--config", str(config)]
    completed = subprocess.run(command, check=False, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu_before
    lines = completed.stdout.split()
    statuses, sizes, connects = lines[0::3], [int(size) for size in lines[1::3]], [int(n) for n in lines[2::3]]
    wanted = "200" if ranges[0] is None else "206"
    if completed.returncode or len(statuses) != len(ranges) or set(statuses) != {wanted}:
        raise RuntimeError(f"curl {completed.returncode}: {completed.stderr[-500:]} statuses {set(statuses)}")
    if sum(connects) != 1:
        raise RuntimeError(f"curl opened {sum(connects)} connections, not one")
    return Run(requests=len(ranges), seconds=seconds, cpu_seconds=cpu, bytes=sum(sizes))


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
    best = max(runs, key=lambda run: run.per_second)
    return {
        rate: round(best.mib_per_second if rate == "mib_s" else best.per_second, 1),
        "server_cpu_ms_per_request": round(statistics.median(run.cpu_ms_per_request for run in runs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=200, help="size of the audio file")
    parser.add_argument("--ranges", type=int, default=400, help="1 MiB range requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--log-level", default="INFO", help="the app's; INFO logs a line per request")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs: dict[str, list[Run]] = {"nginx_ranges": [], "app_ranges": [], "nginx_whole": [], "app_whole": []}
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
        with (
            run_nginx(audio.parent, root / "nginx", content_type="audio/mpeg") as nginx,
            running_service(data_dir, log_level=args.log_level) as (base, process),
        ):
            playback = httpx.get(
                f"{base}/api/audiobooks/{book_id}/playback/", headers=login(base, *create_admin(data_dir))
            )
            playback.raise_for_status()
            servers = {
                "nginx": (nginx.process.pid, f"{nginx.url}/audio.mp3"),
                "app": (process.pid, base + playback.json()["stream_url"]),
            }
            for pid, url in servers.values():
                curl(pid, url, random_ranges(WARM_UP_REQUESTS, size, seed=0), root)
                curl(pid, url, [None], root)  # the page cache holds the file from here on
            baseline = peak = rss_bytes(process.pid)
            for round_number in range(args.rounds):
                ranges = random_ranges(args.ranges, size, seed=round_number + 1)
                for name, (pid, url) in servers.items():
                    runs[f"{name}_ranges"].append(curl(pid, url, ranges, root))
                for name, (pid, url) in servers.items():
                    with RssSampler(process.pid) as sampler:
                        runs[f"{name}_whole"].append(curl(pid, url, [None] * WHOLE_GETS, root))
                    if name == "app":
                        peak = max(peak, sampler.peak)
    load_after = os.getloadavg()
    for name, whole in (("nginx", runs["nginx_whole"]), ("app", runs["app_whole"])):
        assert all(run.bytes == size * WHOLE_GETS for run in whole), name
    ranges_nginx, ranges_app = summary(runs["nginx_ranges"], rate="per_s"), summary(runs["app_ranges"], rate="per_s")
    whole_nginx, whole_app = summary(runs["nginx_whole"], rate="mib_s"), summary(runs["app_whole"], rate="mib_s")
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "client": "curl, one keep-alive connection per run",
        "file_mib": args.mib,
        "app_log_level": args.log_level,
        "rounds": args.rounds,
        "load_average_1_5_15_before": [round(load, 2) for load in load_before],
        "load_average_1_5_15_after": [round(load, 2) for load in load_after],
        "ranges_1mib": {
            "requests_per_round": args.ranges,
            "nginx": ranges_nginx,
            "app": ranges_app,
            "app_to_nginx_rate": round(ranges_app["per_s"] / ranges_nginx["per_s"], 3),
        },
        "whole_file_gets": {
            "gets_per_round": WHOLE_GETS,
            "nginx": whole_nginx,
            "app": whole_app,
            "app_to_nginx_rate": round(whole_app["mib_s"] / whole_nginx["mib_s"], 3),
        },
        "app_rss_baseline_mib": round(baseline / MIB, 1),
        "app_rss_peak_while_streaming_mib": round(peak / MIB, 1),
        "app_rss_growth_mib": round((peak - baseline) / MIB, 1),
    }
    print(json.dumps(result, indent=2))
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
