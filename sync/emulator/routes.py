"""NP6's calls: from a request that passed the key check to the answer, routing and
request checks included. Tags as in docs/np6.md: [S] sourced, [I] assumed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from sync.emulator.world import AlreadyMember, DynamicSegment, TargetNotFound, UnknownSegment, World

MAX_TARGETS = 50  # per PUT [S]
JSON = "application/json"
UNICITY_MEDIA_TYPE = "application/vnd.mperf.v8.unicity"  # the one public example [S]

_SEGMENT_ID = r"([1-9][0-9]{0,17})"
_PATHS = {
    "segment": re.compile(rf"/segments/{_SEGMENT_ID}"),
    "targets": re.compile(rf"/segments/{_SEGMENT_ID}/targets"),
    "normalization": re.compile(rf"/segments/{_SEGMENT_ID}/normalization"),
    "member": re.compile(rf"/targets/([^/]+)/segments/{_SEGMENT_ID}"),
    "lookup": re.compile(r"/targets"),
}
_ALLOWED = {
    "segment": ("GET",),
    "targets": ("PUT", "DELETE", "GET"),
    "normalization": ("POST",),
    "member": ("DELETE", "POST"),
    "lookup": ("GET",),
}
_COUNTRY = re.compile(r"[A-Z]{3}")
_NOT_FOUND = b"target or segment not found"  # the old docs' words for this 404 [S]


@dataclass
class Answer:
    status: int | None  # None: close the connection without answering
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes | None  # None: no Content-Length


@dataclass(frozen=True)
class Route:
    resource: str  # a key of _PATHS
    segment_id: int | None = None
    target: str | None = None
    query: str = ""


def route(path: str) -> Route | None:
    parts = urlsplit(path)
    for resource, pattern in _PATHS.items():
        if match := pattern.fullmatch(parts.path):
            if resource == "member":
                return Route(resource, int(match[2]), unquote(match[1]))
            segment_id = int(match[1]) if match.groups() else None
            return Route(resource, segment_id, query=parts.query)
    return None


def as_targets(body: bytes | None) -> tuple[str, ...] | None:
    """A PUT body that is a JSON array of strings, else None."""
    payload = _load_json(body)
    if isinstance(payload, list) and all(isinstance(t, str) for t in payload):
        return tuple(payload)
    return None


def serve(
    world: World,
    request: Request,
    *,
    require_unicity_media_type: bool = False,
    lookup_route: bool = True,
    no_route_body: bytes = b"",
) -> Answer:
    """The answer to an authenticated request; ``no_route_body``: the words of the 404
    for a route the account does not have."""
    where = route(request.path)
    if where is None or (where.resource == "lookup" and not lookup_route):
        return Answer(404, no_route_body)
    allowed = _ALLOWED[where.resource]
    if request.method not in allowed:
        return Answer(405, headers={"Allow": ", ".join(allowed)})
    if request.method in ("PUT", "POST") and request.body is None:
        return Answer(411, b"Content-Length required\n")  # seen live for a POST [S]
    try:
        return _HANDLERS[(where.resource, request.method)](
            world, where, request, require_unicity_media_type
        )
    except (UnknownSegment, TargetNotFound) as missing:
        return Answer(404, _NOT_FOUND if isinstance(missing, TargetNotFound) else b"")
    except (DynamicSegment, AlreadyMember):
        return Answer(409)  # with an empty body, as seen live [S]


def _put(world: World, where: Route, request: Request, require_media_type: bool) -> Answer:
    if not _is_json(request.headers):
        return Answer(415, b"Content-Type must be application/json\n")  # [S]
    targets = as_targets(request.body)
    if targets is None:
        return Answer(400, b"the body must be a JSON array of strings\n")
    if not 1 <= len(targets) <= MAX_TARGETS or "" in targets:
        return Answer(400, f"send 1 to {MAX_TARGETS} non-empty identifiers\n".encode())
    # Some accounts may need the media type for unicity values: a setting. [I]
    unicity = any(world.is_unicity_value(t) for t in targets)
    if require_media_type and unicity and not _accepts_unicity(request.headers):
        return Answer(415, f"unicity values need Accept: {UNICITY_MEDIA_TYPE}\n".encode())
    added = world.add(_segment(where), targets)
    return Answer(200, str(added).encode(), JSON)  # the number of targets added [S]


def _clear(world: World, where: Route, request: Request, _: bool) -> Answer:
    world.clear(_segment(where))
    return Answer(204)


def _list(world: World, where: Route, request: Request, _: bool) -> Answer:
    return _json(world.targets(_segment(where)))


def _describe(world: World, where: Route, request: Request, _: bool) -> Answer:
    return _json(world.describe(_segment(where)))


def _normalize(world: World, where: Route, request: Request, _: bool) -> Answer:
    if not _is_json(request.headers):
        return Answer(415, b"Content-Type must be application/json\n")
    fields = _normalization_fields(_load_json(request.body))
    if fields is None:
        return Answer(400, b'expected {"fields": {"<fieldId>": ["FRA", ...]}}\n')
    world.normalize(_segment(where), fields)
    return Answer(204)


def _remove_one(world: World, where: Route, request: Request, _: bool) -> Answer:
    world.remove_one(_segment(where), where.target or "")
    return Answer(204)


def _add_one(world: World, where: Route, request: Request, _: bool) -> Answer:
    world.add_one(_segment(where), where.target or "")
    return Answer(204)


def _lookup(world: World, where: Route, request: Request, _: bool) -> Answer:
    values = parse_qs(where.query, keep_blank_values=True).get("unicity")
    if not values:
        return Answer(400, b"give the unicity value to look up: /targets?unicity=...\n")
    return _json(world.lookup(values[0]))


_Handler = Callable[[World, Route, Request, bool], Answer]
_HANDLERS: dict[tuple[str, str], _Handler] = {
    ("targets", "PUT"): _put,
    ("targets", "DELETE"): _clear,
    ("targets", "GET"): _list,
    ("segment", "GET"): _describe,
    ("normalization", "POST"): _normalize,
    ("member", "DELETE"): _remove_one,
    ("member", "POST"): _add_one,
    ("lookup", "GET"): _lookup,
}


def _segment(where: Route) -> int:
    assert where.segment_id is not None  # every segment route captures one
    return where.segment_id


def _json(payload: object) -> Answer:
    return Answer(200, json.dumps(payload).encode(), JSON)


def _is_json(headers: Mapping[str, str]) -> bool:
    media_type = headers.get("content-type", "").partition(";")[0]
    return media_type.strip().lower() == JSON


def _accepts_unicity(headers: Mapping[str, str]) -> bool:
    offered = (
        part.partition(";")[0].strip().lower() for part in headers.get("accept", "").split(",")
    )
    return UNICITY_MEDIA_TYPE in offered


def _load_json(body: bytes | None) -> object:
    """The parsed body; None when absent or not JSON (never a valid payload here)."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _normalization_fields(payload: object) -> dict[str, list[str]] | None:
    """The ``fields`` of a valid normalization body, else None."""
    if not isinstance(payload, dict) or set(payload) != {"fields"}:
        return None
    fields = payload["fields"]
    if not isinstance(fields, dict) or not fields:
        return None
    for key, codes in fields.items():
        if not (key.isdigit() and isinstance(codes, list) and codes):
            return None
        if not all(isinstance(code, str) and _COUNTRY.fullmatch(code) for code in codes):
            return None
    return {key: list(codes) for key, codes in fields.items()}
