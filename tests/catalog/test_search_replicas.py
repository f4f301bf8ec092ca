"""Two real Meilisearch nodes fed by the outbox: one is killed and restarted under search traffic."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from meilisearch_python_sdk import AsyncClient
from meilisearch_python_sdk.errors import MeilisearchError

from audioverse.accounts.models import Role
from audioverse.app import create_app
from audioverse.config import Settings
from tests.accounts.test_auth_flow import bearer
from tests.catalog.fixtures import Tokens, account, book_maker
from tests.catalog.test_search_sync_e2e import (
    COUNT_PENDING_OUTBOX_ROWS,
    count_in_database,
    database_documents,
    indexed_documents,
)
from tests.services import (
    MeilisearchServer,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
    run_meilisearch,
    run_scheduler,
    run_worker,
    until,
    worker_answers,
)

pytestmark = pytest.mark.slow

Client = AsyncTestClient[Litestar]
# Generous: a node back from the dead catches up on the drain's retry (5, 10, 15 s… apart).
CONVERGENCE_SECONDS = 120.0
SEARCH_INTERVAL_SECONDS = 0.02
SEARCHES_WHILE_DOWN = 20


@dataclass
class Nodes:
    settings: Settings
    first: MeilisearchServer
    second: MeilisearchServer
    client: Client
    curator: Tokens


@dataclass
class SearchTraffic:
    """Searches sent all along, every answer kept: a failed one is any answer but 200."""

    answered: int = 0
    failures: list[str] = field(default_factory=list)


@pytest.fixture
def two_meilisearch_nodes(tmp_path: Path) -> Iterator[tuple[MeilisearchServer, MeilisearchServer]]:
    key = secrets.token_urlsafe(24)
    with run_meilisearch(tmp_path / "first", key) as first, run_meilisearch(tmp_path / "second", key) as second:
        yield first, second


@pytest.fixture
async def nodes(
    two_meilisearch_nodes: tuple[MeilisearchServer, MeilisearchServer], tmp_path: Path
) -> AsyncIterator[Nodes]:
    first, second = two_meilisearch_nodes
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        settings = msgspec.structs.replace(
            production_settings(tmp_path / "data", database_url=database_url, namespace=namespace, meilisearch=first),
            meilisearch_urls=[first.url, second.url],
        )
        with run_worker(settings), run_scheduler(settings):
            async with AsyncTestClient(app=create_app(settings)) as client:
                await worker_answers(settings)
                curator = await account(client, settings, Role.CURATOR, verified=True)
                yield Nodes(settings, first, second, client, curator)


async def every_node_equals_the_database(nodes: Nodes) -> bool:
    expected = await database_documents(nodes.settings)
    for node in (nodes.first, nodes.second):
        # A node coming back may not answer yet, or not have its people index yet.
        with contextlib.suppress(MeilisearchError):
            if await indexed_documents(nodes.settings, node.url) == expected:
                continue
        return False
    return True


async def search_all_along(client: Client, traffic: SearchTraffic, words: list[str]) -> None:
    while True:
        response = await client.get("/api/audiobooks/search/", params={"q": words[traffic.answered % len(words)]})
        if response.status_code != 200:
            traffic.failures.append(f"{response.status_code} {response.text[:200]}")
        traffic.answered += 1
        await anyio.sleep(SEARCH_INTERVAL_SECONDS)


async def test_a_node_killed_and_restarted_under_search_traffic_fails_no_search_and_catches_up(
    nodes: Nodes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    make_book = book_maker(nodes.settings, tmp_path_factory, nodes.client)
    tag = secrets.token_hex(4)
    books = [await make_book(title=f"Lighthouse {n} {tag}", authors=(f"Keeper {n} {tag}",)) for n in range(8)]
    await until(lambda: every_node_equals_the_database(nodes), CONVERGENCE_SECONDS, interval=0.5)

    traffic = SearchTraffic()
    curator = bearer(nodes.curator)
    async with anyio.create_task_group() as searches:
        searches.start_soon(search_all_along, nodes.client, traffic, ["lighthouse", "keeper", f"storm {tag}"])
        await anyio.sleep(0.5)
        answered_before_the_kill = traffic.answered
        nodes.second.kill()
        ready = await nodes.client.get("/api/ready")
        assert ready.status_code == 200, ready.text  # the other node answers every search
        for n, book_id in enumerate(books[:4]):
            edited = await nodes.client.patch(
                f"/api/audiobooks/{book_id}/", headers=curator, json={"title": f"Storm {n} {tag}"}
            )
            assert edited.status_code == 200, edited.text
        deleted = await nodes.client.delete(f"/api/audiobooks/{books[-1]}/", headers=curator)
        assert deleted.status_code == 204
        added = await make_book(title=f"Storm at sea {tag}", authors=(f"Keeper 0 {tag}",))
        synonyms = await nodes.client.put(
            "/api/admin/search/synonyms/", headers=curator, json={"sets": [["beacon", "lighthouse"]]}
        )
        assert synonyms.status_code == 200, synonyms.text

        async def edits_searchable() -> bool:
            response = await nodes.client.get("/api/audiobooks/search/", params={"q": f"storm {tag}", "limit": 20})
            found = {item["id"] for item in response.json()["items"] if item["title"].startswith("Storm")}
            return response.status_code == 200 and found == {*books[:4], added}

        await until(edits_searchable, CONVERGENCE_SECONDS, interval=0.2)
        # The dead node's changes wait for it: nothing is marked done that it has not taken in.
        assert await count_in_database(nodes.settings, COUNT_PENDING_OUTBOX_ROWS) > 0
        status = (await nodes.client.get("/api/admin/search/status/", headers=curator)).json()
        first_node, second_node = status["nodes"]
        assert (first_node["node"], first_node["reachable"]) == (nodes.first.url, True)
        assert (second_node["node"], second_node["reachable"]) == (nodes.second.url, False)
        assert second_node["pending_changes"] >= 6 > first_node["pending_changes"]

        # Searches go on while the node is down: how many fit in the steps above depends on the machine's
        # load, so wait for a few more rather than count them (each must still be answered, none fail).
        async def searched_while_down() -> bool:
            return traffic.answered >= answered_before_the_kill + SEARCHES_WHILE_DOWN

        await until(searched_while_down, CONVERGENCE_SECONDS, interval=0.1)
        nodes.second.start()
        await until(lambda: every_node_equals_the_database(nodes), CONVERGENCE_SECONDS, interval=0.5)
        answered_on_return = traffic.answered

        async def searched_after_the_return() -> bool:
            return traffic.answered >= answered_on_return + 5

        await until(searched_after_the_return, CONVERGENCE_SECONDS, interval=0.1)
        searches.cancel_scope.cancel()

    # Searches ran before, during and after the outage (how many depends on the machine's speed), none failed.
    assert answered_before_the_kill > 0
    assert traffic.failures == []
    caught_up = (await indexed_documents(nodes.settings, nodes.second.url))[0]
    assert caught_up[added]["title"] == f"Storm at sea {tag}"
    assert books[-1] not in caught_up
    for node in (nodes.first, nodes.second):
        async with AsyncClient(node.url, nodes.settings.meilisearch_api_key) as meilisearch:
            assert await meilisearch.index(nodes.settings.search_index).get_synonyms() == {
                "beacon": ["lighthouse"],
                "lighthouse": ["beacon"],
            }

    async def outbox_drained() -> bool:
        return await count_in_database(nodes.settings, COUNT_PENDING_OUTBOX_ROWS) == 0

    await until(outbox_drained, CONVERGENCE_SECONDS, interval=0.5)

    # A rebuild goes to both nodes and swaps on both.
    started = await nodes.client.post("/api/admin/search/reindex/", headers=curator)
    assert started.status_code == 202, started.text

    async def rebuilt() -> bool:
        status = (await nodes.client.get("/api/admin/search/status/", headers=curator)).json()
        assert status["reindex"]["state"] != "failed", status
        return bool(status["reindex"]["state"] == "succeeded")

    await until(rebuilt, CONVERGENCE_SECONDS, interval=0.5)
    assert await every_node_equals_the_database(nodes)
