"""What the emulated account holds: segments, their members, the contacts they can name.

Every method takes the one lock, so concurrent handler threads see whole changes only.
Tags as in docs/np6.md: [S] stated by a source, [I] inferred or assumed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.emulator.contacts import TARGET_ID, Contacts


class UnknownSegment(Exception):
    """404: no such segment. [S]"""


class DynamicSegment(Exception):
    """409: a dynamic segment's members cannot be changed. [S]"""


class TargetNotFound(Exception):
    """404 "target or segment not found": one answer for both. [S, old docs]"""


class AlreadyMember(Exception):
    """409: a per-target POST for a target already in the segment. [S, old docs]"""


@dataclass
class _Segment:
    name: str
    dynamic: bool
    created: datetime
    members: set[str] = field(default_factory=set)
    normalizations: list[dict[str, Any]] = field(default_factory=list)


class World:
    """Segments and contacts. ``segments=None``: any positive id names an existing, empty,
    static segment (the emulator's permissive default). ``contacts=None``: every value
    names a contact whose id is the value itself, so what is sent is what is listed.
    ``fold_case``: unicity values name contacts whatever their case (an account that
    matches e-mails case-insensitively). [I]"""

    def __init__(
        self,
        segments: Iterable[int] | Mapping[int, str] | None = None,
        *,
        dynamic: Iterable[int] = (),
        contacts: Contacts | None = None,
        fold_case: bool = True,
    ) -> None:
        self.contacts = contacts
        self.fold_case = fold_case
        self._lock = threading.Lock()
        self._dynamic = {int(s) for s in dynamic}
        names = segments if isinstance(segments, Mapping) else {}
        self._any = segments is None
        self._segments: dict[int, _Segment] = {}
        for segment_id in [*(segments or ()), *self._dynamic]:
            self._create(int(segment_id), names.get(segment_id))

    # --- the calls ------------------------------------------------------------------------

    def add(self, segment_id: int, values: Iterable[str]) -> int:
        """PUT: resolve each value to a contact and add its id; the count of ids added.
        Values that name no contact, or a member, add nothing. [S count, I resolution]"""
        with self._lock:
            segment = self._changeable(segment_id)
            before = len(segment.members)
            segment.members.update(t for t in map(self._resolve, values) if t is not None)
            return len(segment.members) - before

    def clear(self, segment_id: int) -> None:
        with self._lock:
            self._changeable(segment_id).members.clear()

    def targets(self, segment_id: int) -> list[str]:
        """GET targets: ids, whatever the segment was filled with. [S] Sorted: [I]"""
        with self._lock:
            return sorted(self._get(segment_id).members)

    def describe(self, segment_id: int) -> dict[str, Any]:
        """GET /segments/{id}: the old docs' fields. [S] ``targetsCount`` is documented
        as an estimate; here it is exact. [I]"""
        with self._lock:
            segment = self._get(segment_id)
            return {
                "type": "dynamic" if segment.dynamic else "static",
                "id": segment_id,
                "name": segment.name,
                "creation": _iso(segment.created),
                "expiration": _iso(segment.created + timedelta(days=365)),
                "isTest": False,
                "targetsCount": len(segment.members),
            }

    def remove_one(self, segment_id: int, target_id: str) -> None:
        """DELETE /targets/{t}/segments/{s}. A target that is not a member gets the same
        404 as an unknown one. [I]"""
        with self._lock:
            segment = self._changeable(segment_id, missing=TargetNotFound)
            if target_id not in segment.members:
                raise TargetNotFound
            segment.members.remove(target_id)

    def add_one(self, segment_id: int, target_id: str) -> None:
        """POST /targets/{t}/segments/{s}: by id only. [S, old docs]"""
        with self._lock:
            segment = self._changeable(segment_id, missing=TargetNotFound)
            if self.contacts is not None and target_id not in self.contacts:
                raise TargetNotFound
            if target_id in segment.members:
                raise AlreadyMember
            segment.members.add(target_id)

    def lookup(self, unicity: str) -> list[str]:
        """GET /targets?unicity=: ids of the contacts with this value. [S call, I shape]"""
        if self.contacts is None:
            return [unicity]
        return self.contacts.by_unicity(unicity, self.fold_case)

    def is_unicity_value(self, value: str) -> bool:
        """Whether a PUT value is a unicity value rather than an id: not a contact's id;
        without a contacts table, not shaped like one (8 digits or capitals). [I]"""
        if self.contacts is None:
            return not TARGET_ID.fullmatch(value)
        return not self.contacts.is_id(value)

    def normalize(self, segment_id: int, fields: dict[str, list[str]]) -> None:
        with self._lock:
            self._get(segment_id).normalizations.append({"fields": fields})

    # --- what tests see and steer ---------------------------------------------------------

    def members(self, segment_id: int) -> set[str]:
        with self._lock:
            segment = self._segments.get(segment_id)
            return set() if segment is None else set(segment.members)

    def set_members(self, segment_id: int, targets: Iterable[str]) -> None:
        with self._lock:
            segment = self._segments.get(segment_id) or self._create(segment_id)
            segment.members = set(targets)

    def normalizations(self, segment_id: int) -> list[dict[str, Any]]:
        with self._lock:
            segment = self._segments.get(segment_id)
            return [] if segment is None else copy.deepcopy(segment.normalizations)

    # --- with the lock held ---------------------------------------------------------------

    def _resolve(self, value: str) -> str | None:
        return value if self.contacts is None else self.contacts.resolve(value, self.fold_case)

    def _create(self, segment_id: int, name: str | None = None) -> _Segment:
        segment = _Segment(
            name or f"segment {segment_id}",
            segment_id in self._dynamic,
            datetime.now(UTC).replace(microsecond=0),
        )
        self._segments[segment_id] = segment
        return segment

    def _get(self, segment_id: int, missing: type[Exception] = UnknownSegment) -> _Segment:
        segment = self._segments.get(segment_id)
        if segment is not None:
            return segment
        if not self._any:
            raise missing
        return self._create(segment_id)

    def _changeable(self, segment_id: int, missing: type[Exception] = UnknownSegment) -> _Segment:
        segment = self._get(segment_id, missing)
        if segment.dynamic:
            raise DynamicSegment
        return segment


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
