"""OPTIONS answers list every method of the path (Litestar 2 lists only the first handler's, fixed in 3)."""

from __future__ import annotations

from functools import cache

from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

OPTIONS_HANDLER = "options_handler"  # the name of the handler Litestar adds to every HTTP route


@cache
def allowed_methods(app: Litestar) -> dict[str, str]:
    """The ``Allow`` value of each path template, from the routes as finally registered."""
    return {route.path_format: ", ".join(sorted(route.methods)) for route in app.routes if isinstance(route, HTTPRoute)}


async def list_every_allowed_method(message: Message, scope: Scope) -> None:
    """``before_send`` hook: rewrite ``Allow`` on the answer of Litestar's own OPTIONS handler."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    handler = scope.get("route_handler")
    if handler is None or handler.handler_name != OPTIONS_HANDLER:
        return
    allow = allowed_methods(Litestar.from_scope(scope)).get(scope.get("path_template", ""))
    if allow:
        MutableScopeHeaders.from_message(message)["allow"] = allow
