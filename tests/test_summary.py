from __future__ import annotations

from pathlib import Path

import pytest

from sync.report.markdown import GITHUB_SUMMARY_ENV, escape, outcome, render_markdown, write_summary
from sync.report.model import JobReport, Requests, RunReport


def succeeded() -> JobReport:
    return JobReport(
        "newsletter-fr",
        1234,
        status="succeeded",
        action="append",
        rows_read=120_000,
        rows_rejected=3,
        duplicate_keys=12,
        keys=119_985,
        added=250,
        removed=0,
        targets_sent=250,
        targets_accepted=248,
        requests=Requests(put=5, delete=0, post=1, retries=2),
        duration_s=2.44,
        rejects_by_reason={"empty email": 2, "empty id": 1},
        rejects_file="state/newsletter-fr.rejects.csv",
    )


def failed() -> JobReport:
    return JobReport(
        "promo|es",
        99,
        status="failed",
        action="reload",
        error="PUT /segments/99/targets: 403 Forbidden\n(x-request-id req-7)",
        exit_code=1,
    )


def table_rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    # Split on pipes that are not escaped, the way a Markdown table reader does.
    return [
        [cell.strip().replace("\0", "|") for cell in line.replace("\\|", "\0").split("|")[1:-1]]
        for line in lines
    ]


def test_heading_names_the_outcome() -> None:
    report = RunReport([succeeded(), failed()])
    assert render_markdown(report).startswith("## np6-sync: 2 jobs, 1 failed, 1 succeeded\n")


@pytest.mark.parametrize(
    ("jobs", "heading"),
    [
        pytest.param([], "np6-sync: no jobs", id="none"),
        pytest.param(
            [JobReport("a", status="no_changes")], "np6-sync: 1 job, 1 no changes", id="1"
        ),
        pytest.param(
            [JobReport("a", status="refused"), JobReport("b", status="planned")] * 2,
            "np6-sync: 4 jobs, 2 refused, 2 planned",
            id="problems-first",
        ),
    ],
)
def test_outcome(jobs: list[JobReport], heading: str) -> None:
    assert outcome(RunReport(jobs)) == heading


def test_table_has_one_row_per_job_with_its_counts() -> None:
    header, align, first, second = table_rows(render_markdown(RunReport([succeeded(), failed()])))

    assert header == [
        "job",
        "segment",
        "status",
        "action",
        "rows",
        "rejected",
        "dupes",
        "keys",
        "added",
        "removed",
        "sent",
        "accepted",
        "put/del/post",
        "retries",
        "time",
    ]
    assert align[:4] == ["---", "---:", "---", "---"]
    assert dict(zip(header, first, strict=True)) == {
        "job": "newsletter-fr",
        "segment": "1234",
        "status": "succeeded",
        "action": "append",
        "rows": "120,000",
        "rejected": "3",
        "dupes": "12",
        "keys": "119,985",
        "added": "250",
        "removed": "0",
        "sent": "250",
        "accepted": "248",
        "put/del/post": "5/0/1",
        "retries": "2",
        "time": "2.4s",
    }
    assert second[:4] == ["promo|es", "99", "failed", "reload"]


def test_a_dry_run_shows_the_planned_calls() -> None:
    job = JobReport(
        "a",
        1,
        status="planned",
        action="reload",
        reason="5 targets leave",
        planned_requests=Requests(put=3, delete=1),
    )
    markdown = render_markdown(RunReport([job]))

    assert table_rows(markdown)[2][12] == "3/1/0"
    assert "- plan: reload (5 targets leave); would send 3 PUT, 1 DELETE, 0 POST" in markdown


def test_notes_name_errors_refusals_and_rejects_by_reason() -> None:
    refused = JobReport("c", 5, status="refused", refusals=["the reload drops 40% > 10%"])
    markdown = render_markdown(RunReport([succeeded(), failed(), refused]))
    notes = markdown.split("### Notes\n", 1)[1]

    assert "**newsletter-fr**" in notes
    assert (
        "- rejected rows: 2 empty email, 1 empty id (rows in state/newsletter-fr.rejects.csv)"
        in notes
    )
    assert "- NP6 added 248 of the 250 targets sent" in notes
    assert "**promo\\|es**" in notes
    # One line, whatever line breaks the error had.
    assert "- error: PUT /segments/99/targets: 403 Forbidden (x-request-id req-7)\n" in notes
    assert "- refused: the reload drops 40% > 10%" in notes.replace("\\>", ">")


def test_no_notes_section_when_all_went_well() -> None:
    job = JobReport("a", 1, status="no_changes")
    assert "Notes" not in render_markdown(RunReport([job]))


def test_cell_values_cannot_break_the_table() -> None:
    job = JobReport("x|y", 1, status="failed", error="a|b")
    rows = table_rows(render_markdown(RunReport([job])))
    assert all(len(row) == 15 for row in rows)
    assert rows[2][0] == "x|y"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        pytest.param("a|b", "a\\|b", id="pipe"),
        pytest.param("<script>", "\\<script\\>", id="html"),
        pytest.param(
            "*bold* _it_ `code` [link]", "\\*bold\\* \\_it\\_ \\`code\\` \\[link\\]", id="md"
        ),
        pytest.param("C:\\data", "C:\\\\data", id="backslash"),
        pytest.param("newsletter-fr 1,234.5", "newsletter-fr 1,234.5", id="plain"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_write_summary_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("old run\n")
    report = RunReport([succeeded()])

    assert write_summary(report, target, environ={}) == [target]
    assert target.read_text() == render_markdown(report)


def test_write_summary_appends_to_the_github_step_summary(tmp_path: Path) -> None:
    github = tmp_path / "step_summary"
    github.write_text("Tests: 12 passed")  # another tool of the same step, no final newline
    report = RunReport([succeeded(), failed()])

    written = write_summary(report, None, environ={GITHUB_SUMMARY_ENV: str(github)})
    written += write_summary(report, None, environ={GITHUB_SUMMARY_ENV: str(github)})

    assert written == [github, github]
    markdown = render_markdown(report)
    assert github.read_text() == f"Tests: 12 passed\n{markdown}\n{markdown}"


def test_write_summary_to_both(tmp_path: Path) -> None:
    target, github = tmp_path / "summary.md", tmp_path / "step_summary"
    written = write_summary(RunReport(), target, environ={GITHUB_SUMMARY_ENV: str(github)})
    assert written == [target, github]
    assert target.read_text() == github.read_text() == "## np6-sync: no jobs\n"


def test_write_summary_ignores_an_empty_variable(tmp_path: Path) -> None:
    assert write_summary(RunReport(), None, environ={GITHUB_SUMMARY_ENV: ""}) == []
