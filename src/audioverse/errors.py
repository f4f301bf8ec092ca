"""Domain exceptions and their one mapping to RFC 9457 problem+json responses."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, TypedDict

import msgspec
import structlog
from advanced_alchemy.exceptions import DuplicateKeyError, NotFoundError, RepositoryError
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

logger = structlog.get_logger(__name__)

PROBLEM_TYPE_BASE = "https://audioverse.dev/problems/"


class FieldError(TypedDict):
    """One ``{field, message}`` entry of a validation problem."""

    field: str
    message: str


class FieldErrorBody(msgspec.Struct):
    field: str
    message: str


class ProblemBody(msgspec.Struct):
    """The RFC 9457 body every error response carries (documented in the OpenAPI schema)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorBody] | msgspec.UnsetType = msgspec.UNSET


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI response entries for the problem+json errors a route can answer with."""
    return {
        status: ResponseSpec(
            data_container=ProblemBody,
            media_type="application/problem+json",
            description=HTTPStatus(status).phrase,
            generate_examples=False,
        )
        for status in statuses
    }


class DomainError(Exception):
    """A rule of the domain refused the request; carries what the client needs to act on it."""

    status_code: int = HTTPStatus.BAD_REQUEST
    slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        keep_writes: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        # A refusal whose own writes must outlive it (a reused refresh token revokes its family):
        # the request's session commits them before the error response, where any other error rolls back.
        self.keep_writes = keep_writes


class MalformedBody(DomainError):
    """The body cannot be read at all (not UTF-8, not JSON, nested too deep); 422 is for wrong fields."""

    slug = "malformed-body"


class NotFound(DomainError):
    status_code = HTTPStatus.NOT_FOUND
    slug = "not-found"


class Conflict(DomainError):
    status_code = HTTPStatus.CONFLICT
    slug = "conflict"


class Forbidden(DomainError):
    status_code = HTTPStatus.FORBIDDEN
    slug = "forbidden"


class Unauthorized(DomainError):
    status_code = HTTPStatus.UNAUTHORIZED
    slug = "unauthorized"


class Unprocessable(DomainError):
    status_code = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "validation-error"


class PayloadTooLarge(DomainError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    slug = "payload-too-large"


class TooManyRequests(DomainError):
    status_code = HTTPStatus.TOO_MANY_REQUESTS
    slug = "rate-limited"


class ServiceUnavailable(DomainError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    slug = "service-unavailable"


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ProblemDetailsException:
    """Build the problem+json exception every handler below answers with."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = dict(extra or {})
    if errors:
        body["errors"] = [dict(error) for error in errors]
    return ProblemDetailsException(
        status_code=status,
        title=phrase,
        detail=detail,
        type_=PROBLEM_TYPE_BASE + (slug or phrase.lower().replace(" ", "-")),
        headers=dict(headers or {}),
        extra=body or None,
    )


def _from_domain(exc: DomainError) -> ProblemDetailsException:
    return problem(exc.status_code, exc.detail, slug=exc.slug, errors=exc.errors, headers=exc.headers, extra=exc.extra)


NO_NUL_PATTERN = r"^[^\x00]*$"
"""What every client string must match: PostgreSQL text cannot hold NUL (``audioverse.types.Text``)."""


QUERY_TEXT_PATTERN = r"^[^\x00\ufffd]*$"
"""What a query-string value must match: no NUL, and no U+FFFD, which is what bytes that are not
UTF-8 (``%ff``) decode to; the body parser refuses such bytes outright, the query parser replaces them."""


def readable_message(message: str) -> str:
    """A validation message a person can act on; msgspec's for the text rules quotes the regex."""
    if message == f"Expected `str` matching regex {NO_NUL_PATTERN!r}":
        return "Must not contain the NUL character (U+0000)."
    if message == f"Expected `str` matching regex {QUERY_TEXT_PATTERN!r}":
        return "Must be UTF-8 text (percent-encoded) without the NUL character (U+0000)."
    return message


def _validation_errors(extra: Any) -> list[FieldError]:
    """Turn Litestar's ``[{key, message, source}]`` validation extra into ``[{field, message}]``."""
    if not isinstance(extra, list):
        return []
    return [
        FieldError(
            field=str(item.get("key") or item.get("source") or "body"),
            message=readable_message(str(item.get("message", ""))),
        )
        for item in extra
        if isinstance(item, dict)
    ]


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ProblemDetailsException):
        return exc
    if isinstance(exc, RequestEntityTooLarge):
        return problem(
            exc.status_code,
            "The request body is larger than this route accepts (AUDIOVERSE_MAX_BODY_BYTES for JSON bodies).",
            slug=PayloadTooLarge.slug,
        )
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc.extra)
        # Litestar reports a body that fails to decode or validate as 400; the contract says 422
        # for a well-formed request whose fields are wrong, and 400 only for an unreadable body.
        status = HTTPStatus.UNPROCESSABLE_ENTITY if errors else HTTPStatus.BAD_REQUEST
        detail = "The request has invalid fields." if errors else str(exc.detail)
        return problem(status, detail, slug="validation-error", errors=errors)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


def _from_not_found(exc: NotFoundError) -> ProblemDetailsException:
    return problem(HTTPStatus.NOT_FOUND, "The requested resource does not exist.", slug="not-found")


def _from_duplicate(exc: DuplicateKeyError) -> ProblemDetailsException:
    return problem(HTTPStatus.CONFLICT, "A resource with these values already exists.", slug="conflict")


def _from_integrity(exc: IntegrityError) -> ProblemDetailsException:
    # Requests are validated first, so what the database still refuses is a clash with existing rows.
    return problem(HTTPStatus.CONFLICT, "This conflicts with data that already exists.", slug="conflict")


def _from_undecodable(exc: UnicodeDecodeError) -> ProblemDetailsException:
    # Bytes we wrote decode; what fails is text a client sent (multipart fields Litestar reads).
    return problem(
        HTTPStatus.BAD_REQUEST, f"The request has text that is not valid UTF-8: {exc}.", slug=MalformedBody.slug
    )


RETRY_AFTER_SECONDS = "5"


def _try_again_shortly(what: str, event: str, error: str) -> ProblemDetailsException:
    """503 with ``Retry-After``: an outage or overload, logged as a warning, in which nothing was saved."""
    logger.warning(event, error=error)
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        f"{what} right now; nothing was saved. Try again shortly.",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _from_database_unavailable(exc: OperationalError) -> ProblemDetailsException:
    # The database refused or lost the transaction (down, busy, a serialization failure): nothing was saved.
    return _try_again_shortly("The database is unavailable", "database unavailable", str(exc.orig))


def _from_unreachable(exc: ConnectionError) -> ProblemDetailsException:
    # asyncpg raises the socket's own error when the database refuses the connection (it is down or
    # restarting), unwrapped by SQLAlchemy: the same outage as an OperationalError, not a bug.
    return _try_again_shortly(
        "A service this needs is unreachable", "a service the request needs is unreachable", repr(exc)
    )


def _from_pool_timeout(exc: PoolTimeout) -> ProblemDetailsException:
    # Every connection of the pool stayed busy for the whole wait: the service is overloaded, not broken.
    return _try_again_shortly("The service is too busy", "no database connection free in time", str(exc))


def _from_unexpected(exc: Exception) -> ProblemDetailsException:
    logger.exception("unhandled error", exc_info=exc)
    return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "An unexpected error occurred; it has been logged.")


def _from_repository(exc: RepositoryError) -> ProblemDetailsException:
    # advanced-alchemy's repositories wrap what SQLAlchemy raised (a pool timeout, a lost database):
    # the cause decides the answer; a cause with no handler of its own is unexpected.
    cause = exc.__cause__
    if isinstance(cause, Exception) and (handler := _handler_for(cause)) is not _from_unexpected:
        return handler(cause)
    return _from_unexpected(exc)


def _handler_for(exc: BaseException) -> Callable[[Any], ProblemDetailsException]:
    return next(EXCEPTION_MAP[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_MAP)


def _from_group(exc: ExceptionGroup[Exception]) -> ProblemDetailsException:
    # Litestar runs the cleanup of several generator dependencies (a service provider beside the
    # committing db_session) in a task group, so a commit that fails there arrives wrapped in a group.
    if len(exc.exceptions) == 1:
        inner = exc.exceptions[0]
        return _handler_for(inner)(inner)
    return _from_unexpected(exc)


EXCEPTION_MAP: Mapping[type[Any], Callable[[Any], ProblemDetailsException]] = {
    ExceptionGroup: _from_group,
    DomainError: _from_domain,
    HTTPException: _from_http,
    NotFoundError: _from_not_found,
    DuplicateKeyError: _from_duplicate,
    IntegrityError: _from_integrity,
    UnicodeDecodeError: _from_undecodable,
    OperationalError: _from_database_unavailable,
    PoolTimeout: _from_pool_timeout,
    ConnectionError: _from_unreachable,
    RepositoryError: _from_repository,
    Exception: _from_unexpected,
}


def problem_details_plugin() -> ProblemDetailsPlugin:
    """The plugin that renders every error of the service as problem+json."""
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=EXCEPTION_MAP))
