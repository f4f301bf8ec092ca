"""Property test: no body shape sent to an account route makes the service answer 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from audioverse.app import create_app
from audioverse.config import Settings
from tests.services import TEST_HASHING

ROUTES = [
    "/api/auth/register/",
    "/api/auth/login/",
    "/api/auth/refresh/",
    "/api/auth/logout/",
    "/api/auth/verify-email/",
    "/api/auth/resend-verification/",
    "/api/auth/password-reset/",
    "/api/auth/password-reset/confirm/",
]
FIELDS = ["email", "username", "password", "username_or_email", "refresh_token", "token", "new_password"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["a@b.co", "", "x" * 2000, "ünïcødé@exämple.com", "\x00", "' OR 1=1 --"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
    json_values,
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:  # type: ignore[type-arg]
    app = create_app(
        Settings(
            data_dir=tmp_path_factory.mktemp("fuzz"),
            auth_rate_limit=10**9,
            seed_demo_on_startup=False,
            password_hash_profile=TEST_HASHING,
        )
    )
    with TestClient(app) as client:
        yield client  # type: ignore[misc]


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_json_bodies_never_cause_a_500(fuzz_client: TestClient, route: str, body: object) -> None:  # type: ignore[type-arg]
    response = fuzz_client.post(route, json=body)
    assert response.status_code < 500, (route, body, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(ROUTES),
    raw=st.binary(max_size=200),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded"]
    ),
)
def test_raw_bodies_never_cause_a_500(fuzz_client: TestClient, route: str, raw: bytes, content_type: str) -> None:  # type: ignore[type-arg]
    response = fuzz_client.post(route, content=raw, headers={"Content-Type": content_type})
    assert response.status_code < 500, (route, raw, response.text)


def test_fuzz_client_uses_a_scratch_data_dir(fuzz_client: TestClient) -> None:  # type: ignore[type-arg]
    settings: Settings = fuzz_client.app.state.settings
    assert Path(settings.data_dir).name.startswith("fuzz")
