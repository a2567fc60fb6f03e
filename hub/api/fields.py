"""The fields of the API's JSON request bodies, parsed at the edge: a body that is a JSON object, a visibility,
a hardware name, a list of key/value items. Each raises BadRequest (400) with what to send instead."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from core.errors import BadRequest
from core.hardware import Hardware
from hub.bodies import json_body
from hub.deps import hub_of


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body, a JSON object within the server's `max_json_bytes`."""
    body = await json_body(request, hub_of(request).settings.max_json_bytes)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def visibility(body: dict[str, Any]) -> bool | None:
    """Whether the body asks for a private Space (`visibility` or `private`); None when it says neither."""
    if "visibility" in body and body["visibility"] is not None:
        if body["visibility"] not in ("public", "private", "protected"):
            raise BadRequest("visibility must be public, private or protected")
        return bool(body["visibility"] == "private")
    if "private" in body and body["private"] is not None:
        return bool(body["private"])
    return None


def kv_items(body: dict[str, Any], key: str) -> list[tuple[str, str, str | None]]:
    """`body[key]`, a list of `{key, value, description?}`, as (key, value, description) triples."""
    items = body.get(key) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("key"), str) for i in items):
        raise BadRequest(f"{key} must be a list of {{key, value, description?}}")
    return [(i["key"], str(i.get("value", "")), i.get("description")) for i in items]


def hardware_name(value: object) -> str:
    """A hardware flavor's name as huggingface_hub spells it."""
    try:
        return Hardware(value).value
    except ValueError:
        raise BadRequest(f"unknown hardware {value!r}; one of {', '.join(h.value for h in Hardware)}") from None
