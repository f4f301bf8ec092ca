"""Benchmark: server RSS while a 1 GiB audiobook is uploaded (goal: growth under 50 MB).

Run: uv run python bench/upload_rss.py [--gib 1]. Writes bench/results/upload_rss.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import imageio_ffmpeg

from bench.common import ROOT, RssSampler, create_admin, login, rss_bytes, running_service

MIB = 1024 * 1024


def big_mp3(path: Path, size: int) -> None:
    """A valid MP3 of ``size`` bytes: one encoded minute, its frames repeated (MP3 frames concatenate)."""
    unit = path.with_suffix(".unit.mp3")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "sine=frequency=330:duration=60", "-ac", "1", "-ar", "22050", "-c:a", "libmp3lame", "-b:a", "64k",
         "-write_xing", "0", "-id3v2_version", "0", str(unit)],
        check=True,
    )  # fmt: skip
    frames = unit.read_bytes()
    with path.open("wb") as target:
        written = 0
        while written < size:
            target.write(frames)
            written += len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audioverse-bench-") as scratch:
        root = Path(scratch)
        audio = root / "huge.mp3"
        big_mp3(audio, int(args.gib * 1024 * MIB))
        size = audio.stat().st_size
        data_dir = root / "var"
        with running_service(data_dir, max_upload_bytes=str(4 * 1024 * MIB)) as (base, process):
            headers = login(base, *create_admin(data_dir))
            baseline = rss_bytes(process.pid)
            started = time.perf_counter()
            with RssSampler(process.pid) as sampler, audio.open("rb") as handle:
                response = httpx.post(
                    f"{base}/api/audiobooks/",
                    headers=headers,
                    data={"title": "A very long book", "authors": "Bench Author"},
                    files={"audio": ("huge.mp3", handle, "audio/mpeg")},
                    timeout=600,
                )
            elapsed = time.perf_counter() - started
        result = {
            "file_bytes": size,
            "status": response.status_code,
            "duration_seconds_read": response.json().get("duration_seconds"),
            "upload_seconds": round(elapsed, 2),
            "throughput_mib_s": round(size / MIB / elapsed, 1),
            "rss_baseline_mib": round(baseline / MIB, 1),
            "rss_peak_mib": round(sampler.peak / MIB, 1),
            "rss_growth_mib": round((sampler.peak - baseline) / MIB, 1),
            "goal_growth_mib": 50,
        }
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "upload_rss.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
