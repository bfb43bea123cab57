"""The run report as a plain-text table for people, then one line per note."""

from __future__ import annotations

from sync.report.columns import COLUMNS, notes
from sync.report.model import RunReport


def render_table(report: RunReport) -> str:
    header = [column.header for column in COLUMNS]
    rows = [[column.cell(job) for column in COLUMNS] for job in report.jobs]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if column.right else cell.ljust(width)
            for cell, width, column in zip(cells, widths, COLUMNS, strict=True)
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    for job in report.jobs:
        out.extend(f"{job.name}: {note}" for note in notes(job))
    return "\n".join(out)
