"""The removal benchmark (issues 7 and 13): a segment of targets, a few leave; each strategy.

    .venv/bin/python tests/bench/bench_removals.py [--targets 1000000] [--leaving 100]
        [--latency-ms 20] [--identify-by id,unicity]

Generates ``--targets`` NP6 target ids (8 base-36 characters, a pure function of their
index and SEED) into bench-data/removals/, and a source without ``--leaving`` of them. For
each ``sync.removals`` strategy (reload, per_target, defer, auto) the in-process emulator
is given a segment holding every id, ``np6-sync state import --from-segment`` adopts it as
the job's state (no first-load push), then ``np6-sync run`` applies the source, with the
emulator at ``--latency-ms``. Requests are counted from what the emulator received; the
segment is incomplete from the clear's arrival to the last PUT's arrival. Not a pytest
module on purpose; helpers come from bench.py (the benchmark of issue 5).

The unicity rows (``--identify-by unicity``) do the same with a job keyed by email: the
emulator's account holds one contact per id, with the email ``<id>@bench.example``; the
segment holds the ids, ``state import --from`` adopts the emails as the job's state, and
per-target removal costs a look-up (``GET /targets?unicity=``) and a DELETE per email.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from bench import API_KEY, CHUNK_SIZE, DATA, NP6, SEED, Proc, run_process
from bench import print_table as render_table

from sync.emulator import Call, Contacts, Emulator

OUT = DATA / "removals"
STRATEGIES = ("reload", "per_target", "defer", "auto")
SEGMENT_BASE = 7000  # segment SEGMENT_BASE + i for STRATEGIES[i]
SETTINGS = "{concurrency: 16, max_requests_per_second: 1000}"
ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
ID_SPACE = 36**8
MIX = 2654435761  # odd and not a multiple of 3: n -> n * MIX mod 36**8 is one-to-one


# --- data ------------------------------------------------------------------------------------


def target_ids(count: int) -> pa.Array:
    """``count`` distinct ids of 8 letters or digits, scattered over the base-36 space."""
    if count > (2**63 - 1 - SEED) // MIX:
        raise SystemExit(f"--targets {count:,} is too many for the id generator")
    value = (np.arange(count, dtype=np.int64) * MIX + SEED) % ID_SPACE
    codes = np.empty((count, 8), np.uint8)
    for place in range(7, -1, -1):
        codes[:, place] = ALPHABET[value % 36]
        value //= 36
    return pa.array(codes.view("S8").ravel()).cast(pa.string())


def size_tag(count: int) -> str:
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}m"
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def leaving_mask(count: int, leaving: int) -> np.ndarray:
    """True for the ``leaving`` ids (chosen with SEED) that the source no longer holds."""
    rng = np.random.default_rng([SEED, 7])
    mask = np.zeros(count, bool)
    mask[rng.choice(count, size=leaving, replace=False)] = True
    return mask


def emails_of(ids: pa.Array) -> pa.Array:
    """Each contact's unicity value (unicity rows): its id, lower case, at a bench domain."""
    return pc.binary_join_element_wise(pc.utf8_lower(ids), "@bench.example", "")


def write_ids(path: Path, ids: pa.Array, column: str = "target_id") -> Path:
    temp = path.with_name(path.name + ".tmp")
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with temp.open("wb") as out:
        out.write(column.encode() + b"\n")  # pyarrow would quote the header
        pacsv.write_csv(pa.table({column: ids}), out, options)
    temp.replace(path)
    return path


def write_job(strategy: str, segment: int, source: Path, mode: str = "id") -> Path:
    name = f"removals-{mode}-{strategy.replace('_', '-')}"
    state = OUT / f"state-{mode}-{strategy}" / f"{name}.parquet"
    shutil.rmtree(state.parent, ignore_errors=True)
    job = OUT / f"job-{mode}-{strategy}.yaml"
    column = "email" if mode == "unicity" else "target_id"
    job.write_text(
        f"""name: {name}
segment_id: {segment}
source:
  path: {source}
targets:
  identify_by: {mode}
  columns: [{column}]
state:
  path: {state}
sync:
  chunk_size: {CHUNK_SIZE}
  removals: {strategy}
  max_removed_ratio: 0.5
"""
    )
    return job


# --- one strategy ----------------------------------------------------------------------------


@dataclass
class Outcome:
    strategy: str
    proc: Proc
    report: dict[str, Any]
    mode: str = "id"
    lookup: int = 0  # GET /targets?unicity=
    put: int = 0
    clear: int = 0  # DELETE /segments/{id}/targets
    remove: int = 0  # DELETE /targets/{id}/segments/{id}
    other: int = 0
    failed: int = 0  # answers other than 2xx (or none)
    incomplete_s: float = 0.0
    removal_span_s: float = 0.0  # first to last per-target DELETE arrival
    segment_ok: bool = False
    checks: list[str] = field(default_factory=list)  # what did not hold


def count_calls(outcome: Outcome, calls: list[Call], segment: int) -> None:
    segment_path = f"/segments/{segment}/targets"
    member_path = re.compile(rf"/targets/[^/]+/segments/{segment}")
    clears, puts, removes = [], [], []
    for call in calls:
        if call.method == "PUT" and call.path == segment_path:
            puts.append(call.at)
        elif call.method == "DELETE" and call.path == segment_path:
            clears.append(call.at)
        elif call.method == "DELETE" and member_path.fullmatch(call.path):
            removes.append(call.at)
        elif call.method == "GET" and call.path.startswith("/targets?unicity="):
            outcome.lookup += 1
        else:
            outcome.other += 1
        outcome.failed += call.status is None or not 200 <= call.status < 300
    outcome.put, outcome.clear, outcome.remove = len(puts), len(clears), len(removes)
    if clears:
        # Incomplete from the clear's arrival until the last PUT after it arrives.
        after = [at for at in puts if at >= clears[0]]
        outcome.incomplete_s = (max(after) if after else clears[-1]) - clears[0]
    if removes:
        outcome.removal_span_s = max(removes) - min(removes)


def run_strategy(
    index: int,
    strategy: str,
    emulator: Emulator,
    env: dict[str, str],
    config: Path,
    source: Path,
    held: list[str],
    kept: set[str],
    gone: set[str],
    tag: str,
    mode: str = "id",
    held_file: Path | None = None,
) -> Outcome:
    segment = SEGMENT_BASE + index + (len(STRATEGIES) if mode == "unicity" else 0)
    job = write_job(strategy, segment, source, mode)
    emulator.set_members(segment, held)

    # Unicity rows: the segment holds ids, the state the emails (a list it already holds).
    origin = ["--from", str(held_file)] if mode == "unicity" else ["--from-segment"]
    adopt = run_process([NP6, "state", "import", str(job), *origin, "--config", str(config)],
                        env)  # fmt: skip
    if adopt.code != 0 or f"{len(held):,} targets" not in adopt.stdout:
        raise SystemExit(f"{strategy}: state import exited {adopt.code}\n{adopt.stdout}\n"
                         f"{adopt.stderr[-3000:]}")  # fmt: skip
    print(f"  {strategy}: state adopted from segment {segment} in {adopt.wall:.1f} s",
          flush=True)  # fmt: skip

    report_path = OUT / "reports" / f"{tag}-{mode}-{strategy}.json"
    report_path.parent.mkdir(exist_ok=True)
    report_path.unlink(missing_ok=True)
    emulator.reset_calls()
    proc = run_process(
        [NP6, "run", str(job), "--config", str(config), "--report-json", str(report_path)], env
    )
    calls = emulator.calls
    emulator.reset_calls()
    if proc.code != 0 or not report_path.exists():
        raise SystemExit(f"{strategy}: np6-sync run exited {proc.code}\n"
                         f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")  # fmt: skip
    report = json.loads(report_path.read_text())["jobs"][0]
    outcome = Outcome(strategy, proc, report, mode)
    count_calls(outcome, calls, segment)

    members = emulator.members(segment)
    emulator.set_members(segment, [])  # free the emulator's memory
    chosen = chosen_strategy(outcome)
    want = kept | gone if chosen == "defer" else kept
    outcome.segment_ok = members == want
    check(outcome, outcome.segment_ok, f"segment holds {len(members):,}, want {len(want):,}")
    check_requests(outcome, chosen, len(kept), len(gone))
    print(
        f"  {mode} {strategy}: {proc.wall:.2f} s, {report['status']} {report['action']}, "
        f"PUT {outcome.put:,} clear {outcome.clear} look-up {outcome.lookup:,} "
        f"remove {outcome.remove:,}, "
        f"incomplete {outcome.incomplete_s:.2f} s, pending {report['pending_removals']:,}, "
        f"segment {'ok' if outcome.segment_ok else 'WRONG'}",
        flush=True,
    )
    return outcome


def chosen_strategy(outcome: Outcome) -> str:
    action = outcome.report["action"]
    if action == "reload":
        return "reload"
    if action == "update":
        return "per_target"
    return "defer" if outcome.report["pending_removals"] else action


def check(outcome: Outcome, ok: bool, what: str) -> None:
    if not ok:
        outcome.checks.append(what)


def check_requests(outcome: Outcome, chosen: str, kept: int, gone: int) -> None:
    report = outcome.report
    expected = {
        "reload": (math.ceil(kept / CHUNK_SIZE), 1, 0),
        "per_target": (0, 0, gone),
        "defer": (0, 0, 0),
    }.get(chosen)
    got = (outcome.put, outcome.clear, outcome.remove)
    check(outcome, expected == got, f"{chosen}: PUT/clear/remove {got}, want {expected}")
    lookups = gone if chosen == "per_target" and outcome.mode == "unicity" else 0
    check(outcome, outcome.lookup == lookups, f"{outcome.lookup} look-ups, want {lookups}")
    check(outcome, outcome.other == 0 and outcome.failed == 0,
          f"{outcome.other} other request(s), {outcome.failed} failed")  # fmt: skip
    requests = report["requests"]
    sent = (requests["put"], requests["delete"])
    check(outcome, sent == (outcome.put, outcome.clear + outcome.remove),
          f"report requests {sent} differ from the emulator's")  # fmt: skip
    check(outcome, report["removed"] == gone, f"report removed {report['removed']}, want {gone}")
    pending = report["pending_removals"]
    check(outcome, pending == (gone if chosen == "defer" else 0), f"pending {pending}")
    if outcome.strategy != "auto":
        check(outcome, chosen == outcome.strategy, f"ran as {chosen}")
    else:
        costs = {k: v["requests"] for k, v in report["removal_costs"].items() if k != "defer"}
        cheapest = min(costs, key=lambda k: (costs[k], k != "per_target"))
        check(outcome, chosen == cheapest, f"auto ran as {chosen}, cheapest is {cheapest}")


# --- output ----------------------------------------------------------------------------------


def print_table(outcomes: list[Outcome], notes: list[str]) -> None:
    heads = ["mode", "strategy", "action", "PUT", "DEL seg", "GET look-up", "DEL target",
             "requests",
             "cost req", "cost incompl", "wall s", "push s", "RSS MiB", "incomplete s",
             "pending", "segment", "checks"]  # fmt: skip
    lines = []
    for o in outcomes:
        chosen = chosen_strategy(o)
        cost = o.report["removal_costs"].get(chosen, {})
        label = o.strategy if chosen == o.strategy else f"{o.strategy} ({chosen})"
        want = "source + pending" if chosen == "defer" else "source"
        lines.append([
            o.mode, label, o.report["action"], f"{o.put:,}", f"{o.clear:,}", f"{o.lookup:,}",
            f"{o.remove:,}",
            f"{o.put + o.clear + o.lookup + o.remove + o.other:,}", f"{cost.get('requests', 0):,}",
            f"{cost.get('incomplete_requests', 0):,}", f"{o.proc.wall:.2f}",
            f"{o.report.get('phase_s', {}).get('push', 0.0):.2f}", f"{o.proc.rss_mib:.0f}",
            f"{o.incomplete_s:.2f}", f"{o.report['pending_removals']:,}",
            f"{'=' if o.segment_ok else '!='} {want}", "ok" if not o.checks else "FAIL",
        ])  # fmt: skip
    render_table(heads, lines, left={0, 1, 2, 15, 16})
    for o in outcomes:
        for problem in o.checks:
            print(f"FAIL {o.strategy}: {problem}")
    for note in notes:
        print(f"* {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1_000_000, help="ids the segment holds")
    parser.add_argument("--leaving", type=int, default=100, help="ids the source no longer has")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency")
    parser.add_argument(
        "--strategies", default=",".join(STRATEGIES), help="comma-separated, in this order"
    )
    parser.add_argument(
        "--identify-by", default="id,unicity", help="id, unicity or both (comma-separated)"
    )
    args = parser.parse_args()
    modes = [m.strip() for m in args.identify_by.split(",") if m.strip()]
    if set(modes) - {"id", "unicity"}:
        parser.error("--identify-by takes id, unicity or both")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if unknown := set(strategies) - set(STRATEGIES):
        parser.error(f"unknown strategies {sorted(unknown)}")
    if not 0 < args.leaving < args.targets:
        parser.error("--leaving must be between 1 and --targets - 1")
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    tag = f"{size_tag(args.targets)}-minus-{args.leaving}"
    print(f"removal benchmark: {args.targets:,} targets, {args.leaving:,} leaving, emulator "
          f"latency {args.latency_ms:g} ms, settings {SETTINGS}, python "
          f"{sys.version.split()[0]}", flush=True)  # fmt: skip

    ids = target_ids(args.targets)
    mask = leaving_mask(args.targets, args.leaving)
    write_ids(OUT / f"targets-{size_tag(args.targets)}.csv", ids)
    source = write_ids(OUT / f"source-{tag}.csv", ids.filter(pa.array(~mask)))
    held = ids.to_pylist()
    gone = set(ids.filter(pa.array(mask)).to_pylist())
    kept = set(held) - gone
    config = OUT / "cfg.yaml"
    config.write_text(SETTINGS + "\n")
    contacts = None
    if "unicity" in modes:  # one contact per id, its email the unicity value
        emails = emails_of(ids)
        held_emails = write_ids(OUT / f"emails-{size_tag(args.targets)}.csv", emails, "email")
        email_source = write_ids(OUT / f"email-source-{tag}.csv",
                                 emails.filter(pa.array(~mask)), "email")  # fmt: skip
        contacts = Contacts({i: (e,) for i, e in zip(held, emails.to_pylist(), strict=True)})
        del emails
    print(f"  data: {len(held):,} ids, source {source.name} ({len(kept):,} ids), "
          f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip

    outcomes = []
    with Emulator(API_KEY, latency_s=args.latency_ms / 1000, contacts=contacts) as emulator:
        env = {**os.environ, "NP6_API_KEY": API_KEY, "NP6_BASE_URL": emulator.url}
        for mode in modes:
            for strategy in strategies:
                index = STRATEGIES.index(strategy)
                files = (source, None) if mode == "id" else (email_source, held_emails)
                outcomes.append(run_strategy(index, strategy, emulator, env, config, files[0],
                                             held, kept, gone, tag, mode, files[1]))  # fmt: skip

    costs = {
        f"{o.mode}: "
        + "; ".join(
            f"{name} {cost['requests']:,} ({cost['incomplete_requests']:,} incomplete)"
            for name, cost in sorted(o.report["removal_costs"].items())
        )
        for o in outcomes
    }
    notes = [
        f"{args.targets:,} targets in each segment before the run, {args.leaving:,} leave; "
        f"emulator latency {args.latency_ms:g} ms; settings {SETTINGS}; chunk_size "
        f"{CHUNK_SIZE}",
        "removal_costs, requests (of which while the segment is incomplete), "
        + (
            "the same in every report of a mode: "
            if len(costs) == len(modes)
            else "DIFFERING between reports: "
        )
        + " | ".join(sorted(costs)),
        "cost req / cost incompl: the report's removal_costs for the strategy the run took; "
        "requests: what the emulator received (PUT, DELETE /segments/{id}/targets, "
        "DELETE /targets/{id}/segments/{id}, GET /targets?unicity=)",
        "incomplete s: from the clear's arrival to the last PUT's arrival (Call.at); "
        "wall s: the whole `np6-sync run` subprocess (start, reading the source, state write)",
    ]
    for o in outcomes:
        if o.remove:
            notes.append(f"{o.mode} {o.strategy}: the {o.remove} per-target DELETEs "
                         f"arrived over {o.removal_span_s:.2f} s (the segment is never "
                         "incomplete)")  # fmt: skip
        if o.report["pending_removals"]:
            notes.append(f"{o.mode} {o.strategy}: {o.report['pending_removals']:,} removals "
                         f"pending since {o.report['oldest_pending_removal']}; reason: "
                         f"{o.report['reason']}")  # fmt: skip
    print_table(outcomes, notes)
    failed = sum(bool(o.checks) for o in outcomes)
    print(f"{len(outcomes) - failed} ok, {failed} FAIL; "
          f"benchmark took {time.perf_counter() - started:.0f} s")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
