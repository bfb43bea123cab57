"""`np6-sync demo`: the example job, four runs, against a built-in emulator.

The emulated account holds contacts, as NP6 does: the list's keys are their unicity
values, and the segment ends up holding the contacts' ids.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import tempfile
from pathlib import Path

from sync.config import Settings
from sync.emulator import Emulator, make_contacts
from sync.job.runs import Request, run_entries
from sync.np6.client import client_factory
from sync.report.model import RunReport
from sync.report.table import render_table

JOB = """\
name: newsletter-fr
segment_id: 1234
source:
  path: newsletter.csv
  delimiter: ";"
targets:
  identify_by: unicity
  columns: [email, customer_id]
  separator: "|"
  transforms:
    email: [strip, lower]
sync:
  mode: auto
  max_removed_ratio: 0.1
"""
KEY = "demo-key"


def run_demo(keep: Path | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="np6-sync-demo-") as temp:
        folder = keep or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "newsletter-fr.yaml").write_text(JOB)
        contacts = _contacts(1_000)
        joining = _contacts(40, start=1_000)
        # The account knows everyone the list will ever name, and a few more.
        everyone = contacts + joining + _contacts(60, start=1_040)
        account = make_contacts(_unicity(row) for row in everyone)
        print(f"The emulated NP6 account holds {len(account):,} contacts (id and unicity value).")
        segments = {1234: "newsletter-fr"}
        with Emulator(KEY, segments=segments, contacts=account, latency_s=0.002) as emulator:
            steps = [
                ("1. first load: every contact is new", contacts),
                ("2. same file again: nothing to send", contacts),
                ("3. 40 contacts join: only they are sent", contacts + joining),
                (
                    "4. 5 contacts leave: each is removed on its own (cheaper than a reload)",
                    contacts[5:] + joining,
                ),
            ]
            worst = 0
            for title, rows in steps:
                _write_csv(folder / "newsletter.csv", rows)
                report = _run(folder / "newsletter-fr.yaml", emulator)
                print(f"\n{title}\n")
                print(render_table(report))
                print(_holding(emulator.members(1234)))
                worst = max(worst, report.exit_code)
        print(f"\nthe demo's files: {folder}" if keep else "")
        return worst


def _run(job_path: Path, emulator: Emulator) -> RunReport:
    """The job as `np6-sync run` runs it: the same orchestrator, so the same routes (the
    second run is answered from the seal) and the same history."""
    from sync.commands.common import load_jobs

    settings = Settings(base_url=emulator.url, concurrency=4, max_requests_per_second=200)
    request = Request(settings, client_factory(settings, KEY))
    return run_entries(load_jobs([str(job_path)]), request).report


def _unicity(row: dict[str, str]) -> str:
    """The key the job builds from a row (its transforms, then its separator)."""
    return f"{row['email'].strip().lower()}|{row['customer_id']}"


def _holding(members: set[str]) -> str:
    ids = sorted(members)
    sample = f" ({ids[0]}, {ids[1]}, ...)" if len(ids) > 1 else ""
    return f"the emulated segment now holds {len(ids):,} targets: contact ids{sample}"


def _contacts(count: int, start: int = 0) -> list[dict[str, str]]:
    rng = random.Random(start)
    first = ["Camille", "Louis", "Léa", "Hugo", "Chloé", "Jules", "Inès", "Noah"]
    return [
        {
            "email": f" {rng.choice(first)}.{n}@Example.FR ",
            "customer_id": f"{n:07d}",
            "phone": f"+336{rng.randrange(10**8):08d}",
        }
        for n in range(start, start + count)
    ]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    temp = path.with_suffix(".tmp")
    with temp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["email", "customer_id", "phone"], delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temp, path)


def demo(args: argparse.Namespace) -> int:
    return run_demo(args.keep)
