"""Schemathesis over the whole OpenAPI document: every operation, anonymous and as a curator, both profiles.

Schemathesis' own engine runs all four phases: explicit examples, coverage cases, a bounded number of
generated (valid and invalid) requests per operation, and a stateful run that chains operations through
the links it infers from the document; every built-in check runs on every response. Deterministic
(fixed seed), so a failure reproduces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import schemathesis
from schemathesis import engine
from schemathesis.engine import events
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.schemas import OpenApiSchema

from audioverse.app import OPENAPI_PATH, create_app
from audioverse.catalog.seed import DEMO_PASSWORD
from audioverse.config import Settings
from tests.services import (
    TEST_HASHING,
    MeilisearchServer,
    fresh_postgres_database,
    fresh_redis_namespace,
    production_settings,
)

FUZZ_BOOKS = 3
MAX_EXAMPLES = 5
STATEFUL_STEPS = 100
SEED = 20261201
SCHEMA_URL = f"{OPENAPI_PATH}/openapi.json"
CALLERS = ["anonymous", "curator"]

# What the contract answers to a request the schema cannot tell apart from a good one: a token that is
# not (or no longer) valid, a password too weak, audio that is not audio, a position past the end, a
# chapter list out of order. These are 422s by the contract, so they count as accepted positive data.
SEMANTIC_422 = [
    "POST /api/auth/register",
    "POST /api/auth/verify-email",
    "POST /api/auth/password-reset/confirm",
    "PUT /api/users/me/picture",
    "POST /api/audiobooks",
    "PUT /api/audiobooks/{audiobook_id}/chapters",
    "POST /api/progress/{audiobook_id}",
    "PUT /api/progress/{audiobook_id}",
    "POST /api/audiobooks/{audiobook_id}/bookmarks",
    "PATCH /api/bookmarks/{bookmark_id}",
    "PUT /api/bookmarks/{bookmark_id}",
    "PUT /api/admin/search/synonyms",  # a set whose terms are one once lowercased ("Dr", "dr")
    "PUT /api/users/me/follows",  # an author id or genre slug that does not exist
    "PUT /api/users/me/notifications",  # a time zone name that is not an IANA one
    "POST /api/notifications/unsubscribe",
]
# `offset + limit` past 10,000 is refused with 422 (narrow the query instead): a bound across two
# parameters, which a JSON schema cannot state.
PAGINATED = [
    "GET /api/audiobooks",
    "GET /api/audiobooks/search",
    "GET /api/authors",
    "GET /api/narrators",
    "GET /api/audiobooks/{audiobook_id}/reviews",
    "GET /api/library",
    "GET /api/library/favorites",
    "GET /api/library/currently-listening",
    "GET /api/library/history",
    "GET /api/listening/current",
    "GET /api/listening/history",
    "GET /api/listening/completed",
    "GET /api/audiobooks/recommended",
    "GET /api/audiobooks/{audiobook_id}/similar",
    "GET /api/admin/search/zero-results",
]
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "429"]


def fuzz_config(headers: dict[str, str]) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "workers": 1,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
            },
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES},
            },
            "operations": [
                {
                    "include-name": name,
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}},
                }
                for name in [*SEMANTIC_422, *PAGINATED]
            ],
        }
    )


@pytest.fixture(scope="module")
async def fuzz_settings(
    profile: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Settings]:
    """A deployment of its own (fresh database, index and data dir) seeded with a few demo books."""
    data_dir: Path = tmp_path_factory.mktemp(f"fuzz-{profile}")
    seeded = {"auth_rate_limit": 10**9, "seed_demo_on_startup": True, "demo_books": FUZZ_BOOKS}
    if profile == "embedded":
        yield Settings(data_dir=data_dir, password_hash_profile=TEST_HASHING, **seeded)
        return
    meilisearch: MeilisearchServer = request.getfixturevalue("meilisearch")
    async with fresh_postgres_database() as database_url, fresh_redis_namespace() as namespace:
        base = production_settings(data_dir, database_url=database_url, namespace=namespace, meilisearch=meilisearch)
        yield msgspec.structs.replace(base, **seeded)
        # The app runs on schemathesis' event loop; its connections must close before the database drops.
        schemathesis_asgi.shutdown_lifespans()


@pytest.fixture(scope="module", params=CALLERS)
def api_schema(fuzz_settings: Settings, request: pytest.FixtureRequest) -> Iterator[OpenApiSchema]:
    """The document as a fresh app serves it, called with no credentials or as the demo curator.

    Each caller gets its own app over the same deployment: schemathesis stops an app's lifespan when
    its run ends, and a stopped app does not start again.
    """
    app = create_app(fuzz_settings)
    headers: dict[str, str] = {}
    if request.param == "curator":
        with schemathesis_asgi.get_client(app) as client:
            response = client.post(
                "/api/auth/login/", json={"username_or_email": "demo_curator", "password": DEMO_PASSWORD}
            )
        assert response.status_code == 200, response.text
        headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    yield schemathesis.openapi.from_asgi(SCHEMA_URL, app, config=fuzz_config(headers))
    schemathesis_asgi.shutdown_lifespans()


def run_engine(api_schema: OpenApiSchema) -> tuple[set[str], list[str], list[str]]:
    """Run every phase: the phases that ran scenarios, the failed checks (with a curl each) and errors."""
    phases: set[str] = set()
    failures: list[str] = []
    errors: list[str] = []
    for event in engine.from_schema(api_schema).execute():
        if isinstance(event, events.ScenarioFinished):
            phases.add(event.phase.value)
            for case_id, checks in event.recorder.checks.items():
                interaction = event.recorder.interactions.get(case_id)
                status = interaction.response.status_code if interaction and interaction.response else "-"
                failures.extend(
                    f"[{event.phase.value}] {event.recorder.label}: {check.name}: "
                    f"{check.failure_info.failure.title} ({status})\n    {check.failure_info.code_sample}"
                    for check in checks
                    if check.failure_info is not None
                )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    return phases, sorted(set(failures)), errors


def test_every_operation_and_sequence_conforms(api_schema: OpenApiSchema) -> None:
    phases, failures, errors = run_engine(api_schema)
    assert {"examples", "coverage", "fuzzing", "stateful"} <= phases
    assert not errors, "\n".join(errors)
    assert not failures, f"{len(failures)} failing checks:\n" + "\n".join(failures)
