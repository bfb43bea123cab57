"""Per-target removal by unicity value: look the contact's id up, then remove that id.

A unicity value is personal data (an email, a customer number): nothing here names it in a
message; the client names a look-up by a digest of its value. Each look-up's answer is
journaled before it is acted on, so a run stopped in between repeats no look-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from sync.errors import ApiError, FatalApiError, SyncError, UnexpectedAnswerError
from sync.state.local import Journal

if TYPE_CHECKING:  # requests loads with the first job that sends, not with the run's code
    from sync.np6.client import NP6Client


class LookupUnavailable(SyncError):
    """The account answers the look-up or the per-target removal as if it had no such
    call (404 or 405 to a look-up, 405 to a removal, or an answer of another shape): the
    job falls back to a reload."""


@dataclass
class LookupStats:
    lookups: int = 0  # look-ups answered
    not_found: int = 0  # keys whose look-up answered an empty list: dropped from the state
    several: int = 0  # keys whose look-up found several contacts: each removed
    kept_by_twin: int = 0  # leaving keys whose contact a kept key still names: not removed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, **changes: int) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, getattr(self, name) + value)


class UnicityRemover:
    """Removes one key (a unicity value) from the segment: the ids known from an earlier
    run, else a look-up; an id NP6 no longer knows is looked up again, once.

    An id that a kept key still resolves to stays: with ``twins`` (leaving keys with the
    kept keys equal to them but for case) and an account that folds case (the client's
    ``folds_case``), those kept keys are looked up, and only the ids none of them names
    are removed."""

    def __init__(
        self,
        client: NP6Client,
        segment_id: int,
        journal: Journal,
        known: pa.Table,
        confirm_segment: Callable[[], None],
        stats: LookupStats,
        twins: pa.Table | None = None,
    ) -> None:
        self._client = client
        self._segment_id = segment_id
        self._journal = journal
        self._known = dict(zip(known["key"].to_pylist(), known["ids"].to_pylist(), strict=True))
        self._confirm_segment = confirm_segment
        self.stats = stats
        self._twins: dict[str, list[str]] = {}
        if twins is not None and client.folds_case:
            for key, twin in zip(twins["key"].to_pylist(), twins["twin"].to_pylist(), strict=True):
                self._twins.setdefault(key, []).append(twin)
        self._kept: dict[str, list[str]] = {}  # a kept twin's ids, looked up once
        self._kept_lock = threading.Lock()

    def remove(self, key: str) -> bool:
        """Journals ``removed`` once every contact of ``key`` is out of the segment;
        whether NP6 took one out now (not when none was there)."""
        ids = self._known.get(key)
        fresh = ids is None
        if ids is None:
            ids = self._look_up(key)
        if len(ids) > 1:
            self.stats.count(several=1)
        if not ids:  # the look-up found no contact (not one a kept twin still names)
            self.stats.count(not_found=1)
        if key in self._twins and ids:
            kept = self._kept_ids(self._twins[key])
            if kept.intersection(ids):
                self.stats.count(kept_by_twin=1)
                ids = [target_id for target_id in ids if target_id not in kept]
        made = False
        for target_id in ids:
            if self._delete(target_id):
                made = True
                continue
            if not fresh:  # an id learned earlier: the contact may have been replaced
                self._known.pop(key, None)
                return self.remove(key) or made
            self._confirm_segment()  # a 404 is "already gone" only for a known segment
        self._journal.removed([key])
        return made

    def _look_up(self, key: str) -> list[str]:
        """The ids of the contacts holding ``key``. Only a list proves that none does: a
        404 or a 405 may come from a proxy or an NP6 without the call, whatever its words
        say ("No route found for GET /targets" speaks of targets too)."""
        try:
            ids = self._client.lookup(key)
        except UnexpectedAnswerError as error:
            raise LookupUnavailable(
                f"the contact look-up ({error.call}) answered in a shape np6-sync cannot read"
            ) from None
        except FatalApiError as error:
            if error.status in (404, 405):
                raise LookupUnavailable(
                    f"the contact look-up (GET /targets?unicity=) answered {error.status}, "
                    "not a list of ids: this account seems not to have it"
                ) from None
            raise _without_value(error, key) from None
        except ApiError as error:
            raise _without_value(error, key) from None
        self.stats.count(lookups=1)
        self._journal.looked_up(key, ids)
        return ids

    def _kept_ids(self, twins: list[str]) -> set[str]:
        """The ids that kept keys equal to a leaving one but for case resolve to."""
        kept: set[str] = set()
        for twin in twins:
            with self._kept_lock:
                ids = self._kept.get(twin)
            if ids is None:
                ids = self._look_up(twin)
                with self._kept_lock:
                    self._kept[twin] = ids
            kept.update(ids)
        return kept

    def _delete(self, target_id: str) -> bool:
        try:
            return self._client.remove_target(self._segment_id, target_id)
        except FatalApiError as error:
            if error.status == 405:
                raise LookupUnavailable(
                    "the per-target removal (DELETE /targets/{id}/segments/{segment}) "
                    "answered 405: this account seems not to have it"
                ) from None
            raise


def _without_value(error: ApiError, key: str) -> ApiError:
    """The same error, with the looked-up value cut from NP6's words if it echoed it."""
    detail = error.detail.replace(key, "(the value)") if key else error.detail
    return type(error)(error.call, error.status, error.request_id, detail, error.retry_after)
