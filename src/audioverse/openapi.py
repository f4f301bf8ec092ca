"""The OpenAPI document says what the server does: who may call each route, and how errors look."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, cast

import msgspec

# Litestar's own msgspec plugin; the subclass below only adds what `forbid_unknown_fields` means.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.enums import ParamType
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import HTTPRoute

from audioverse.errors import ProblemBody, problem_responses

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.handlers import HTTPRouteHandler
    from litestar.routes import BaseRoute
    from litestar.security.base import AbstractSecurityConfig
    from litestar.typing import FieldDefinition

PROBLEM_MEDIA_TYPE = "application/problem+json"
COMPONENT_REF = "#/components/schemas/{name}"
PROBLEM_SCHEMA = Reference(ref=COMPONENT_REF.format(name=ProblemBody.__name__))
BODILESS_STATUSES = {"204", "304"}


def problem_response(status: int) -> OpenAPIResponse:
    """A problem+json response entry, for operations whose entries Litestar has already generated."""
    return OpenAPIResponse(
        description=HTTPStatus(status).phrase,
        content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=PROBLEM_SCHEMA)},
    )


@dataclass
class ContractOperation(Operation):
    """An operation as the service answers it, where Litestar's defaults would say otherwise.

    Every route that reads parameters or a body answers 400 (unreadable) and 422 (invalid fields) in
    problem+json, not Litestar's default JSON error; one with a body may answer 413, one with a path
    parameter 404; 204 and 304 have no body; a public route needs no credentials (``security: []``).
    """

    public: ClassVar[bool] = False

    def __post_init__(self) -> None:
        responses = dict(self.responses or {})
        if any(
            isinstance(parameter, Parameter) and parameter.param_in == ParamType.PATH
            for parameter in self.parameters or []
        ):
            # A path segment that is not an id of the right type routes nowhere.
            responses.setdefault("404", problem_response(HTTPStatus.NOT_FOUND))
        if self.parameters or self.request_body:
            responses["400"] = problem_response(HTTPStatus.BAD_REQUEST)
            responses.setdefault("422", problem_response(HTTPStatus.UNPROCESSABLE_ENTITY))
        if self.request_body:
            responses.setdefault("413", problem_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE))
            # A client that stops sending its body is dropped after the idle time (audioverse.body_timeout).
            responses.setdefault("408", problem_response(HTTPStatus.REQUEST_TIMEOUT))
            if isinstance(self.request_body, RequestBody) and accepts_no_body(self.request_body):
                self.request_body.required = False
        for status, response in responses.items():
            if status in BODILESS_STATUSES and isinstance(response, OpenAPIResponse):
                response.content = None
        self.responses = dict(sorted(responses.items()))
        if self.public and self.security is None:
            self.security = []


def accepts_no_body(body: RequestBody) -> bool:
    """Whether the body's schema admits null: Litestar marks every body required, even ``data: X | None = None``."""
    return any(
        isinstance(media.schema, Schema)
        and any(isinstance(choice, Schema) and choice.type == OpenAPIType.NULL for choice in media.schema.one_of or [])
        for media in body.content.values()
    )


@cache
def public_variant(operation_class: type[ContractOperation]) -> type[ContractOperation]:
    return type(f"Public{operation_class.__name__}", (operation_class,), {"public": True})


class ContractDocs(ReceiveRoutePlugin):
    """Derives each operation's auth documentation from the route itself, in one place.

    A route the auth backend does not guard (by path, ``opt`` key or method) is public; every other
    route may answer 401, and a route with guards may answer 403.
    """

    def __init__(self, auth: AbstractSecurityConfig[Any, Any]) -> None:
        exclude = auth.exclude
        patterns = [exclude] if isinstance(exclude, str) else list(exclude or [])
        self.excluded_paths = re.compile("|".join(patterns)) if patterns else None
        self.exclude_opt_key = auth.exclude_opt_key
        self.excluded_methods = set(auth.exclude_http_methods or [])

    def is_public(self, path: str, handler: HTTPRouteHandler) -> bool:
        return bool(
            handler.opt.get(self.exclude_opt_key)
            or (self.excluded_paths is not None and self.excluded_paths.match(path))
            or handler.http_methods <= self.excluded_methods
        )

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            public = self.is_public(route.path, handler)
            responses = dict(handler.responses or {})
            if not public:
                responses.setdefault(HTTPStatus.UNAUTHORIZED, problem_responses(HTTPStatus.UNAUTHORIZED)[401])
            if handler.resolve_guards():
                responses.setdefault(HTTPStatus.FORBIDDEN, problem_responses(HTTPStatus.FORBIDDEN)[403])
            handler.responses = responses
            operation_class = handler.operation_class
            if not issubclass(operation_class, ContractOperation):
                operation_class = ContractOperation
            handler.operation_class = public_variant(operation_class) if public else operation_class


class ClosedStructSchemaPlugin(StructSchemaPlugin):
    """A request Struct (one that refuses unknown fields) is documented by msgspec's own JSON schema.

    That is the schema the server validates with, nested constraints included (Litestar's drops those
    of list items and of optional fields' bounds of 0), plus ``additionalProperties: false``.
    """

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            _, components = msgspec.json.schema_components([info.cls], ref_template=COMPONENT_REF)
            own = components[info.cls.__name__]
            # Raw JSON schema, emitted as is; nested enums keep their Litestar components, which share names.
            schema.properties = cast("dict[str, Schema | Reference]", own["properties"])
            schema.required = sorted(own.get("required", []))
            schema.additional_properties = False
        return schema


def binary_content(*media_types: str) -> dict[str, OpenAPIMediaType]:
    """Response content that is raw bytes of any of ``media_types`` (ranges such as ``audio/*`` allowed)."""
    return {
        media_type: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))
        for media_type in media_types
    }


def header(description: str, *, required: bool = False) -> OpenAPIHeader:
    return OpenAPIHeader(description=description, required=required, schema=Schema(type=OpenAPIType.STRING))


def request_header(name: str, description: str) -> Parameter:
    return Parameter(
        name=name, param_in=ParamType.HEADER, description=description, schema=Schema(type=OpenAPIType.STRING)
    )


IMMUTABLE_CACHE = header("`public, max-age=31536000, immutable`: the URL changes with the file.", required=True)


@dataclass
class ImageOperation(ContractOperation):
    """A route that answers with the bytes of a stored JPEG, PNG or WebP image."""

    def __post_init__(self) -> None:
        responses = dict(self.responses or {})
        responses["200"] = OpenAPIResponse(
            description="The image.",
            content=binary_content("image/jpeg", "image/png", "image/webp"),
            headers={"Cache-Control": IMMUTABLE_CACHE},
        )
        self.responses = responses
        super().__post_init__()


def form_operation(form: Schema) -> type[ContractOperation]:
    """An operation whose multipart/form-data body is ``form``; the handler reads the parts itself."""

    class FormOperation(ContractOperation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                required=True, content={"multipart/form-data": OpenAPIMediaType(schema=form)}
            )
            super().__post_init__()

    return FormOperation


def file_field(description: str, media_type: str) -> Schema:
    return Schema(
        type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY, content_media_type=media_type, description=description
    )
