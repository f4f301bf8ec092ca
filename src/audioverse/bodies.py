"""JSON request bodies decoded strictly into the handler's type, with bounded nesting."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import msgspec
from litestar import Request
from litestar.serialization.msgspec_hooks import default_deserializer
from litestar.types import Empty

from audioverse.errors import FieldError, MalformedBody, Unprocessable, readable_message

MAX_JSON_DEPTH = 32
"""Arrays and objects nested deeper than this are refused (400); the deepest body (chapters) needs two."""

_STRING_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_SQUARE_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"field `(?P<name>[^`]+)`")


def nests_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the JSON in ``body`` nests arrays/objects more than ``limit`` deep (checked at C speed).

    Each pass deletes the innermost ``[]`` pairs (objects count as arrays once strings are gone),
    so a document ``limit`` deep is empty after ``limit`` passes.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _STRING_LITERAL.sub(b"", body).translate(_SQUARE_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        inner_removed = brackets.replace(b"[]", b"")
        if inner_removed == brackets:
            return False  # unbalanced: the decoder reports the malformed JSON
        brackets = inner_removed
    return bool(brackets)


_GOT_FLOAT = "got `float`"


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


def _convert_with_integral_floats(body: bytes, target_type: Any, dec_hook: Any) -> Any:
    """``body`` with 5.0 read as 5 (ints still fill float fields), otherwise as strict as the typed decode."""
    values = _integral_floats_as_ints(msgspec.json.decode(body))
    try:
        return msgspec.convert(values, target_type, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise Unprocessable("The request has invalid fields.", errors=[body_field_error(exc)]) from exc


def body_field_error(exc: msgspec.ValidationError) -> FieldError:
    """Msgspec's ``Expected `int`, got `str` - at `$.rating``` as ``{field: "rating", message: ...}``."""
    message = str(exc)
    path = ""
    if at := _AT_PATH.search(message):
        path, message = at["path"], message[: at.start()]
    if named := _NAMED_FIELD.search(message):  # "Object missing required field `rating`"
        path = f"{path}.{named['name']}" if path else named["name"]
    return FieldError(field=path or "body", message=readable_message(message))


def decode_json_body(body: bytes, target_type: Any, dec_hook: Any = None) -> Any:
    """``body`` as ``target_type``: strict (no ``"1"`` for a number), 400 if unreadable, 422 if invalid.

    The typed decoder stops at the first value the type does not allow, so a body that decodes is no
    deeper than its type; only a body that fails, or one decoded untyped, is measured for depth.
    """
    too_deep = MalformedBody(f"The JSON body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep.")
    if target_type is Any and nests_deeper_than(body, MAX_JSON_DEPTH):
        raise too_deep
    try:
        return msgspec.json.decode(body, type=target_type, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        if nests_deeper_than(body, MAX_JSON_DEPTH):
            raise too_deep from exc
        if _GOT_FLOAT in str(exc):
            # JSON (and the schema's `integer`) reads 5.0 as the number 5; msgspec's strict mode does not.
            return _convert_with_integral_floats(body, target_type, dec_hook)
        raise Unprocessable("The request has invalid fields.", errors=[body_field_error(exc)]) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"The request body is not valid UTF-8 JSON: {exc}.") from exc
    except RecursionError as exc:
        raise too_deep from exc


class StrictJSONRequest(Request[Any, Any, Any]):
    """Decodes a JSON body straight into the handler's ``data`` type, strictly.

    Litestar decodes to plain values, then converts the whole signature with ``strict=False`` (query
    strings need ``"1"`` read as 1); a JSON body already says what is a number, so it is typed here.
    The signature conversion then keeps the decoded value as it is.
    """

    async def json(self) -> Any:
        if self._json is Empty and (cached := self._connection_state.json) is not Empty:
            self._json = cached
        if self._json is Empty:
            data_field = self.route_handler.parsed_data_field
            target_type = data_field.annotation if data_field is not None else Any
            dec_hook = partial(default_deserializer, type_decoders=self.route_handler.resolve_type_decoders())
            self._json = self._connection_state.json = decode_json_body(
                await self.body() or b"null", target_type, dec_hook
            )
        return self._json
