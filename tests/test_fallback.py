"""The reload fallback's plan (sync/job/fallback.py), field by field: the keys it sends are
the file's, read afresh, and nothing of the per-target plan it replaces leaks into it."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import make_job, write_csv
from sync.config import load_job
from sync.core.keys import KEY_TYPE, collect_keys, distinct
from sync.core.plan import Holding, make_plan
from sync.errors import RefusedError
from sync.job.fallback import Fallback, reload_instead
from sync.send.lookup import LookupUnavailable

HELD = [f"{n:08d}" for n in range(100)]


def _setup(tmp_path: Path, keep: int, **sync: object) -> tuple[Fallback, object]:
    """A job in id mode whose state holds HELD; its file keeps the first ``keep`` ids."""
    write_csv(tmp_path / "list.csv", [[k] for k in HELD[:keep]], header=("target_id",))
    job = load_job(
        make_job(
            tmp_path,
            targets={"identify_by": "id", "columns": ["target_id"]},
            sync={"max_removed_ratio": 1.0, "reload_cost_factor": 100, **sync},
        )
    )
    table = pa.table({"target_id": HELD[:keep]})
    keyset = distinct(collect_keys(table, job.targets))
    holding = Holding(pa.array(HELD, KEY_TYPE))
    plan = make_plan(holding, keyset.keys, job.sync, by_id=True)
    assert plan.action == "update"  # one by one: what the fallback replaces
    fresh = pa.array(HELD[:keep], KEY_TYPE)
    given = Fallback(job, keyset, lambda: fresh)
    return given, plan


def test_the_reload_sends_the_files_keys_and_nothing_of_the_plan_it_replaces(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    given, plan = _setup(tmp_path, keep=90)
    # What a folded per-target plan in unicity mode carries, none of which a reload keeps;
    # and the file read afresh holds 85 keys (it changed since it was planned).
    pending = pa.table({"key": pa.array(HELD[95:], KEY_TYPE), "since": ["2026-12-01"] * 5})
    plan = replace(plan, send_every=True, lookups=7, pending=pending.cast(plan.pending.schema))
    given = replace(given, source_keys=lambda: pa.array(HELD[:85], KEY_TYPE))
    why = LookupUnavailable("DELETE /targets/x/segments/1: answered 405")
    with caplog.at_level(logging.WARNING, logger="np6sync.run"):
        instead = reload_instead(plan, why, given)  # type: ignore[arg-type]
    assert (instead.why, instead.refusals) == (str(why), ())
    reload = instead.plan
    assert reload.action == "reload" and reload.clears
    assert reload.send.to_pylist() == HELD[:85]
    assert (reload.send_every, reload.source_keys, reload.lookups) == (False, 85, 0)
    [record] = caplog.records
    assert record.getMessage() == f"{why}: the job reloads the segment instead"
    assert record.__dict__["job"] == given.job.name
    assert len(reload.remove) == 0 and reload.remove.type == KEY_TYPE
    assert len(reload.pending) == 0 and reload.pending_changed is True
    assert reload.reason == (f"10 target(s) must leave the segment; {why}: reloading instead")
    assert (reload.added, reload.removed) == (0, 10)


def test_a_reload_the_safeguards_refuse_is_refused_with_the_reason(tmp_path: Path) -> None:
    given, plan = _setup(tmp_path, keep=50, max_removed_ratio=0.1, min_rows=60)
    why = LookupUnavailable("GET /targets: answered 404")
    instead = reload_instead(plan, why, given)  # type: ignore[arg-type]
    problems = instead.refusals
    assert len(problems) == 2  # too few rows, too many removals
    refused = instead.refused()
    assert isinstance(refused, RefusedError)
    assert str(refused) == f"{why}; the reload instead is refused: " + "; ".join(problems)
    assert instead.why == str(why) and instead.plan.action == "reload"


def test_force_passes_the_safeguards_of_the_reload(tmp_path: Path) -> None:
    given, plan = _setup(tmp_path, keep=50, max_removed_ratio=0.1)
    forced = Fallback(given.job, given.keyset, given.source_keys, force=True)
    reload = reload_instead(plan, LookupUnavailable("405"), forced)  # type: ignore[arg-type]
    assert reload.plan.send.to_pylist() == HELD[:50] and reload.refusals == ()
