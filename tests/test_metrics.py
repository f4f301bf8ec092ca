"""/metrics: request counts by route and the background gauges, for a scraper with the token only."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient

from audioverse.app import create_app
from audioverse.config import Settings

TOKEN = "a-scrape-token-for-the-test-suite"


async def test_a_scrape_with_the_token_sees_requests_by_route_and_the_gauges(settings: Settings) -> None:
    with_token = msgspec.structs.replace(settings, metrics_token=TOKEN, seed_demo_on_startup=False)
    async with AsyncTestClient(app=create_app(with_token)) as client:
        for book in (1, 2, 3):  # three ids, one route
            await client.get(f"/api/audiobooks/{book}/")
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200, scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
        body = scraped.text
        route_lines = [line for line in body.splitlines() if line.startswith("audioverse_requests_total{")]
        assert any('path="/api/audiobooks/{audiobook_id}"' in line for line in route_lines), route_lines
        assert not any('path="/api/audiobooks/1"' in line for line in route_lines)  # templates, not raw paths
        assert "audioverse_request_duration_seconds_bucket" in body
        for gauge in (
            "audioverse_search_outbox_pending",
            "audioverse_search_outbox_lag_seconds",
            "audioverse_task_queue_depth",
            'audioverse_reindex_state{state="idle"}',
            "audioverse_recommendation_model_age_seconds",
        ):
            assert gauge in body, gauge
        for refused in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            assert (await client.get("/metrics", headers=refused)).status_code == 403, refused


async def test_without_a_token_a_client_from_elsewhere_is_refused(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    # The test client's address is "testclient", not loopback; `audioverse run` is scraped in test_cli.
    refused = await client.get("/metrics")
    assert refused.status_code == 403
    assert "AUDIOVERSE_METRICS_TOKEN" in refused.json()["detail"]
    documented = (await client.get("/api/schema/openapi.json")).json()["paths"]["/metrics"]["get"]["responses"]
    assert "403" in documented
