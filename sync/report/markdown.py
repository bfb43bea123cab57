"""The run report as Markdown, for CI pages such as a GitHub Actions job summary."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from sync.report.model import JobReport, Requests, RunReport, Status

GITHUB_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

# Problems first: they are what a reader of a CI page looks for.
_STATUS_ORDER: tuple[Status, ...] = ("failed", "refused", "succeeded", "no_changes", "planned")

_COLUMNS: tuple[tuple[str, bool, Callable[[JobReport], str]], ...] = (
    # (header, right-aligned, cell)
    ("job", False, lambda j: j.name),
    ("segment", True, lambda j: str(j.segment_id or "")),
    ("status", False, lambda j: j.status),
    ("action", False, lambda j: j.action),
    ("rows", True, lambda j: f"{j.rows_read:,}"),
    ("rejected", True, lambda j: f"{j.rows_rejected:,}"),
    ("keys", True, lambda j: f"{j.keys:,}"),
    ("added", True, lambda j: f"{j.added:,}"),
    ("removed", True, lambda j: f"{j.removed:,}"),
    ("sent", True, lambda j: f"{j.targets_sent:,}"),
    ("accepted", True, lambda j: f"{j.targets_accepted:,}"),
    ("PUT/DELETE/POST", True, lambda j: _calls(_requests(j))),
    ("retries", True, lambda j: str(j.requests.retries)),
    ("time", True, lambda j: f"{j.duration_s:.1f}s"),
)

# Characters that Markdown would read as formatting, links or HTML, or as a cell boundary.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def render_markdown(report: RunReport) -> str:
    """A heading with the outcome, one table row per job, then notes for what went wrong."""
    out = [f"## {outcome(report)}", ""]
    if report.jobs:
        out.append("| " + " | ".join(name for name, _, _ in _COLUMNS) + " |")
        out.append("|" + "|".join("---:" if right else "---" for _, right, _ in _COLUMNS) + "|")
        for job in report.jobs:
            out.append("| " + " | ".join(_line(cell(job)) for _, _, cell in _COLUMNS) + " |")
        out.append("")
    notes = [(job, _notes(job)) for job in report.jobs]
    if any(lines for _, lines in notes):
        out.extend(["### Notes", ""])
        for job, lines in notes:
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
    """Write the summary to ``path`` (replaced) and append it to ``$GITHUB_STEP_SUMMARY``.

    Returns the files written. GitHub gives each step one summary file that other tools of
    the same step may also write to, hence append.
    """
    text = render_markdown(report)
    written: list[Path] = []
    if path is not None:
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


def _requests(job: JobReport) -> Requests:
    return job.planned_requests if job.status == "planned" else job.requests


def _calls(r: Requests) -> str:
    return f"{r.put}/{r.delete}/{r.post}"


def _notes(job: JobReport) -> list[str]:
    notes = []
    if job.error:
        notes.append(f"- error: {_line(job.error)}")
    notes.extend(f"- refused: {_line(refusal)}" for refusal in job.refusals)
    if job.status == "planned" and job.action != "none":
        r = job.planned_requests
        notes.append(
            f"- plan: {job.action} ({_line(job.reason)}); would send {r.put} PUT, "
            f"{r.delete} DELETE, {r.post} POST; nothing was sent"
        )
    if job.rows_rejected:
        where = f" (rows in {_line(job.rejects_file)})" if job.rejects_file else ""
        notes.append(f"- rejected rows: {job.rows_rejected:,}{where}")
        notes.extend(
            f"  - {count:,} {_line(reason)}" for reason, count in job.rejects_by_reason.items()
        )
    if job.targets_accepted < job.targets_sent:
        notes.append(
            f"- NP6 added {job.targets_accepted:,} of the {job.targets_sent:,} targets sent "
            "(the others were already in the segment or unknown to NP6)"
        )
    return notes
