"""Provider of the stats service, built on the request's committing ``db_session``."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar.providers import create_service_provider
from litestar.di import Provide

from audioverse.stats.services import StatsService

provide_stats = create_service_provider(StatsService)

STATS_DEPENDENCY = {"stats": Provide(provide_stats)}
