"""Benchmark: 200 clients that stall halfway through a request body, against a normal client meanwhile.

Each stalled client opens a connection, sends a login request whose headers declare a body length and
then only half of that body. Meanwhile a normal client times list requests and logins one after the
other; the same requests are timed before the stall as a baseline. Then the script waits for the
server to drop the stalled requests (408 and a closed connection after ``--idle`` seconds).

Run: uv run python -m bench.stalled_bodies [--clients 200 --idle 5]. Writes bench/results/stalled_bodies.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import ROOT, running_service

LOGIN_BODY = json.dumps({"username_or_email": "nobody", "password": "not the password at all"}).encode()
# The normal client's body is read and validated whole, then refused (422) before any password hashing,
# whose deliberate cost would otherwise dominate the timings.
INCOMPLETE_LOGIN = json.dumps({"username_or_email": "nobody"}).encode()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def timed_requests(client: httpx.Client, rounds: int) -> dict[str, dict[str, float]]:
    """Sequential list requests and login posts (a body the server reads), each timed; all must be answered."""
    listing: list[float] = []
    posts: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get("/api/audiobooks/", params={"limit": 5})
        listing.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        started = time.perf_counter()
        headers = {"Content-Type": "application/json"}
        response = client.post("/api/auth/login/", content=INCOMPLETE_LOGIN, headers=headers)
        posts.append(time.perf_counter() - started)
        assert response.status_code == 422, response.text
    return {"list": percentiles(listing), "post_with_body": percentiles(posts)}


def open_stalled(host: str, port: int) -> socket.socket:
    connection = socket.create_connection((host, port), timeout=10)
    head = (
        f"POST /api/auth/login/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(LOGIN_BODY)}\r\n\r\n"
    ).encode()
    connection.sendall(head + LOGIN_BODY[: len(LOGIN_BODY) // 2])
    connection.setblocking(False)
    return connection


def wait_for_drops(stalled: list[socket.socket], opened_at: float, deadline: float) -> dict[str, object]:
    """Read every stalled connection until the server closes it; the status each got and when."""
    selector = selectors.DefaultSelector()
    received = {connection.fileno(): b"" for connection in stalled}
    for connection in stalled:
        selector.register(connection, selectors.EVENT_READ)
    closed_after: list[float] = []
    statuses: dict[str, int] = {}
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            connection: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                chunk = connection.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[connection.fileno()] += chunk
                continue
            closed_after.append(time.monotonic() - opened_at)
            status = received[connection.fileno()].split(b"\r\n", 1)[0].decode() or "closed without an answer"
            statuses[status] = statuses.get(status, 0) + 1
            selector.unregister(connection)
            connection.close()
    still_open = len(selector.get_map())
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return {
        "answers": statuses,
        "still_open_at_deadline": still_open,
        "dropped_after_s": {
            "first": round(min(closed_after), 2) if closed_after else None,
            "last": round(max(closed_after), 2) if closed_after else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=200, help="stalled connections")
    parser.add_argument("--idle", type=float, default=5.0, help="AUDIOVERSE_REQUEST_BODY_IDLE_SECONDS")
    parser.add_argument("--rounds", type=int, default=40, help="normal requests of each kind per phase")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "stalled_bodies.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch:
        settings = {"request_body_idle_seconds": str(args.idle), "auth_rate_limit": "1000000"}
        with running_service(Path(scratch) / "var", **settings) as (base, _process):
            host, port = base.removeprefix("http://").split(":")
            with httpx.Client(base_url=base, timeout=30) as client:
                timed_requests(client, 5)  # warm up
                baseline = timed_requests(client, args.rounds)
                opened_at = time.monotonic()
                stalled = [open_stalled(host, int(port)) for _ in range(args.clients)]
                opening_seconds = time.monotonic() - opened_at
                with ThreadPoolExecutor(max_workers=1) as watcher:
                    # Watched from the start, so each drop is timed when it happens.
                    dropping = watcher.submit(wait_for_drops, stalled, opened_at, opened_at + args.idle + 60)
                    during = timed_requests(client, args.rounds)
                    normal_done_after = time.monotonic() - opened_at
                    drops = dropping.result()
                after = timed_requests(client, args.rounds)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "stalled_clients": args.clients,
        "idle_seconds": args.idle,
        "opening_stalled_clients_s": round(opening_seconds, 2),
        "normal_client": {
            "before": baseline,
            "while_stalled": during,
            "finished_after_s": round(normal_done_after, 2),
            "all_served_while_stalled": normal_done_after < args.idle,
            "after": after,
        },
        "stalled": drops,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
