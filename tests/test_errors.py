"""Every error leaves as problem+json: validation (422 with field errors), domain errors, crashes."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from advanced_alchemy.config import EngineConfig, SQLAlchemyAsyncConfig
from advanced_alchemy.exceptions import DuplicateKeyError, NotFoundError
from litestar import Litestar, get, post
from litestar.params import FromPath, JSONBody
from litestar.testing import AsyncTestClient
from sqlalchemy.exc import TimeoutError as PoolTimeout

from audioverse.accounts.auth import TokenHolder, access_token
from audioverse.accounts.models import Role, User
from audioverse.app import create_app
from audioverse.errors import Conflict, FieldError, Unprocessable, problem_details_plugin
from audioverse.listening.progress_batch import ProgressSaves
from audioverse.listening.schemas import ProgressWrite
from tests.services import fresh_postgres_database, production_settings, unique_name


class Payload(msgspec.Struct):
    name: str
    count: int


@post("/payload")
async def accept(data: JSONBody[Payload]) -> Payload:
    return data


@get("/crash")
async def crash() -> None:
    raise RuntimeError("secret internal detail")


@get("/domain")
async def domain() -> None:
    raise Unprocessable(
        "The password is too weak.",
        errors=[FieldError(field="password", message="at least 10 characters")],
    )


@get("/conflict")
async def conflict() -> None:
    raise Conflict("That username is taken.", headers={"X-Hint": "pick another"})


@get("/repository/{which:str}")
async def repository(which: FromPath[str]) -> None:
    raise NotFoundError("row") if which == "missing" else DuplicateKeyError("dup")


def problem_app() -> Litestar:
    return Litestar([accept, crash, domain, conflict, repository], plugins=[problem_details_plugin()])


async def test_field_validation_is_422_with_errors() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.post("/payload", json={"name": "x", "count": "many"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["title"] == "Unprocessable Entity"
    assert body["errors"][0]["field"] == "count"
    assert "int" in body["errors"][0]["message"]


async def test_unreadable_body_is_400() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.post("/payload", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code in {400, 422}
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_unexpected_errors_are_500_without_internals() -> None:
    async with AsyncTestClient(problem_app()) as client:
        response = await client.get("/crash")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text


async def test_domain_errors_carry_field_errors_and_headers() -> None:
    async with AsyncTestClient(problem_app()) as client:
        weak = await client.get("/domain")
        taken = await client.get("/conflict")
    assert weak.status_code == 422
    assert weak.json() == {
        "status": 422,
        "type": "https://audioverse.dev/problems/validation-error",
        "title": "Unprocessable Entity",
        "detail": "The password is too weak.",
        "errors": [{"field": "password", "message": "at least 10 characters"}],
    }
    assert taken.status_code == 409
    assert taken.headers["x-hint"] == "pick another"


async def test_repository_errors_map_to_404_and_409() -> None:
    async with AsyncTestClient(problem_app()) as client:
        missing = await client.get("/repository/missing")
        duplicate = await client.get("/repository/duplicate")
    assert missing.status_code == 404
    assert duplicate.status_code == 409


# SQLAlchemy's default: connections a pool opens beyond its size when all are busy.
POOL_OVERFLOW = 10
SAVES_SENT_TOGETHER = 6
POOL_WAIT_SECONDS = 1
LOGIN = {"username_or_email": "nobody", "password": "not a password of anyone"}


async def test_a_request_that_finds_every_connection_busy_is_answered_503_to_retry(tmp_path: Path) -> None:
    async with fresh_postgres_database() as database_url:
        busy = msgspec.structs.replace(
            production_settings(tmp_path, database_url=database_url, namespace=unique_name("busy"), meilisearch=None),
            redis_url=None,
            database_pool_size=1,
            database_pool_timeout_seconds=1,
        )
        app = create_app(busy)
        async with AsyncTestClient(app=app) as client:
            # Overload: every connection the pool may open is held (on the app's loop) while a request needs one.
            engine = app.state.database.get_engine()
            held = [client.blocking_portal.call(engine.connect) for _ in range(1 + POOL_OVERFLOW)]
            try:
                response = await client.post("/api/auth/login/", json=LOGIN)
            finally:
                for connection in held:
                    client.blocking_portal.call(connection.close)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert "too busy" in response.json()["detail"]
            assert (await client.post("/api/auth/login/", json=LOGIN)).status_code == 401


def bearer_for_user_one(app: Litestar) -> dict[str, str]:
    """A valid token of the app naming user 1: a save's account is read with its batch, from the database."""
    token = access_token(app.state.secret_key, 5, User(id=1, role=Role.LISTENER))
    return {"Authorization": f"Bearer {token}"}


async def test_progress_saves_that_find_every_connection_busy_fail_together_at_once() -> None:
    async with fresh_postgres_database() as database_url:
        database = SQLAlchemyAsyncConfig(
            connection_string=database_url,
            engine_config=EngineConfig(pool_size=1, max_overflow=0, pool_timeout=POOL_WAIT_SECONDS),
        )
        engine = database.get_engine()
        held = await engine.connect()
        try:
            saves = ProgressSaves(database)
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(
                    saves.save(TokenHolder(1, datetime.now(UTC)), book_id, ProgressWrite(position_seconds=1.0))
                    for book_id in range(1, SAVES_SENT_TOGETHER + 1)
                ),
                return_exceptions=True,
            )
            waited = time.monotonic() - started
        finally:
            await held.close()
            await engine.dispose()
    # Each is answered 503 "too busy" (the existing pool test above checks that answer).
    assert all(isinstance(outcome, PoolTimeout) for outcome in outcomes), outcomes
    # One wait for a connection answers the whole batch: retrying each save alone would wait out one each.
    assert waited < SAVES_SENT_TOGETHER * POOL_WAIT_SECONDS


async def test_a_database_that_refuses_connections_is_answered_503_not_500(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens on it once the socket closes
    down = msgspec.structs.replace(
        production_settings(
            tmp_path,
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/audioverse",
            namespace=unique_name("down"),
            meilisearch=None,
        ),
        redis_url=None,
        migrate_on_startup=False,
    )
    app = create_app(down)
    async with AsyncTestClient(app=app) as client:
        for response in (
            await client.get("/api/audiobooks/"),
            await client.post("/api/auth/login/", json=LOGIN),
            await client.put("/api/progress/1/", headers=bearer_for_user_one(app), json={"position_seconds": 1}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.headers["content-type"].startswith("application/problem+json")
