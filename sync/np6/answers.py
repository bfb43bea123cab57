"""NP6's answers read strictly: a body that is not what the call promises is an error,
never a guess (a PUT's count never defaults to "all accepted")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

SegmentType = Literal["static", "dynamic"]
_QUOTE_LIMIT = 80


class AnswerShapeError(ValueError):
    """The body is not what the call promises; the message says what it got."""


@dataclass(frozen=True)
class SegmentInfo:
    """What ``GET /segments/{id}`` says; a field NP6 leaves out is None.

    ``targets_count`` is NP6's estimate, not an exact count (docs/np6.md)."""

    id: int
    name: str | None = None
    type: SegmentType | None = None
    targets_count: int | None = None


def quoted(body: str) -> str:
    """A body as a short quote for a message (the caller redacts it first)."""
    text = " ".join(body.split())
    return repr(text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 1] + "…")


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AnswerShapeError("not JSON") from None


def parse_count(body: bytes, sent: int) -> int:
    """The number of targets a PUT added: a JSON integer between 0 and what was sent."""
    value = _json(body)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnswerShapeError("not an integer count of targets added")
    if not 0 <= value <= sent:
        raise AnswerShapeError(f"a count outside 0..{sent}, the number of targets sent")
    return value


def parse_segment(body: bytes, segment_id: int) -> SegmentInfo:
    """A segment's description, tolerant of missing fields (NP6's are not all documented),
    strict about its type: only an object is a description."""
    value = _json(body)
    if not isinstance(value, dict):
        raise AnswerShapeError("not a JSON object describing the segment")
    name = value.get("name")
    kind = str(value.get("type", "")).lower()
    count = value.get("targetsCount")
    return SegmentInfo(
        id=_int(value.get("id")) or segment_id,
        name=name if isinstance(name, str) else None,
        type="static" if kind == "static" else "dynamic" if kind == "dynamic" else None,
        targets_count=_int(count),
    )


def parse_ids(body: bytes) -> list[str]:
    """Target ids from a look-up: a list of ids, or of objects that carry an ``id``."""
    value = _json(body)
    if not isinstance(value, list):
        raise AnswerShapeError("not a JSON list of target ids")
    if all(type(item) is str and item for item in value):
        return value  # the usual answer, and a segment's listing may hold millions
    ids = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("id")
        if isinstance(item, bool) or not isinstance(item, str | int) or item == "":
            raise AnswerShapeError("a list holding something other than target ids")
        ids.append(str(item))
    return ids


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
