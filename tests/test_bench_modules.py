"""Every benchmark still imports: they run outside CI, so a renamed function would otherwise break them unseen."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("module", sorted(path.stem for path in BENCH.glob("*.py") if path.stem != "__init__"))
def test_the_benchmark_imports(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing locust (bench/locust_mixed.py) would patch the standard library with gevent under every later test.
    monkeypatch.setenv("LOCUST_SKIP_MONKEY_PATCH", "1")
    importlib.import_module(f"bench.{module}")
