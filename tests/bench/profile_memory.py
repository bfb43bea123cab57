"""Where a no-change run's memory goes: run_job's local phases in-process, with the RSS,
its high-water mark and Arrow's allocation after each one.

    .venv/bin/python tests/bench/profile_memory.py bench-data/job-bench-10m-csv-inc.yaml
"""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import pyarrow as pa

from sync.config import load_job
from sync.core.keys import build_keys
from sync.core.plan import make_plan
from sync.job.source import source_spec as _source_spec
from sync.read.sources import read_source
from sync.state.local import StateStore


def mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def mark(label: str, started: float) -> float:
    now = time.perf_counter()
    print(
        f"{label:<12} {now - started:6.2f} s  RSS {mib('VmRSS'):7.0f} MiB  "
        f"peak {mib('VmHWM'):7.0f} MiB  arrow {pa.total_allocated_bytes() / 2**20:7.0f} MiB  "
        f"arrow peak {pa.default_memory_pool().max_memory() / 2**20:7.0f} MiB",
        flush=True,
    )
    return now


def main(path: str) -> None:
    job = load_job(path)
    t = mark("start", time.perf_counter())
    source = read_source(_source_spec(job), job.targets.columns)
    t = mark("read", t)
    keyset = build_keys(source.table, job.targets, source.first_row)
    del source
    t = mark("keys", t)
    store = StateStore(job.state_path, job.segment_id, job.targets.definition())
    holding = store.load()
    t = mark("state_read", t)
    # make_plan's third parameter was the mode, then the whole sync block.
    third = list(inspect.signature(make_plan).parameters)[2]
    plan = make_plan(holding, keyset.keys, job.sync.mode if third == "mode" else job.sync)
    t = mark("diff", t)
    print(plan.action, plan.added, plan.removed)


if __name__ == "__main__":
    main(sys.argv[1])
