"""The run report as Markdown, for CI pages such as a GitHub Actions job summary."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from sync.report.columns import COLUMNS, notes
from sync.report.model import RunReport, Status

GITHUB_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

# Problems first: they are what a reader of a CI page looks for.
_STATUS_ORDER: tuple[Status, ...] = ("failed", "refused", "succeeded", "no_changes", "planned")

# Characters that Markdown would read as formatting, links or HTML, or as a cell boundary.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def render_markdown(report: RunReport) -> str:
    """A heading with the outcome, one table row per job, then notes for what went wrong."""
    out = [f"## {outcome(report)}", ""]
    if report.jobs:
        out.append("| " + " | ".join(column.header for column in COLUMNS) + " |")
        out.append("|" + "|".join("---:" if c.right else "---" for c in COLUMNS) + "|")
        for job in report.jobs:
            out.append("| " + " | ".join(_line(c.cell(job)) for c in COLUMNS) + " |")
        out.append("")
    notes_of = [(job, [f"- {_line(note)}" for note in notes(job)]) for job in report.jobs]
    if any(lines for _, lines in notes_of):
        out.extend(["### Notes", ""])
        for job, lines in notes_of:
            if lines:
                out.append(f"**{escape(job.name)}**")
                out.append("")
                out.extend(lines)
                out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def outcome(report: RunReport) -> str:
    """``np6-sync: 2 jobs, 1 failed, 1 succeeded``."""
    if not report.jobs:
        return "np6-sync: no jobs"
    count = len(report.jobs)
    statuses = Counter(job.status for job in report.jobs)
    parts = [f"{statuses[s]} {s.replace('_', ' ')}" for s in _STATUS_ORDER if statuses[s]]
    return f"np6-sync: {count} job{'s' if count != 1 else ''}, " + ", ".join(parts)


def write_summary(report: RunReport, path: Path | None, environ: Mapping[str, str]) -> list[Path]:
    """Write the summary to ``path`` (replaced; ``-``: stdout) and append it to
    ``$GITHUB_STEP_SUMMARY``.

    Returns the files written. GitHub gives each step one summary file that other tools of
    the same step may also write to, hence append.
    """
    text = render_markdown(report)
    written: list[Path] = []
    if path is not None and str(path) == "-":  # stdout
        sys.stdout.write(text)
    elif path is not None:
        path.write_text(text, encoding="utf-8")
        written.append(path)
    github = environ.get(GITHUB_SUMMARY_ENV)
    if github:
        target = Path(github)
        with target.open("a", encoding="utf-8") as f:
            # A blank line keeps our heading from joining what is already there.
            if f.tell() > 0:
                f.write("\n")
            f.write(text)
        written.append(target)
    return written


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text)


def _line(text: str) -> str:
    # A line break would end a table row or a list item.
    return escape(" ".join(text.split()))
