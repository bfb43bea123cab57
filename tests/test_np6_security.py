"""Where the API key goes and never goes, through the real command line: no redirect is
followed, no form of the key reaches any output, a key that cannot be a header is refused
at start, and plain http leaves loopback only when a setting allows it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
import yaml
from loopback import Answer, Loopback, Request

from conftest import API_KEY, SEGMENT, emails, make_job, run_process, settings_file, write_csv
from sync.emulator import Emulator
from sync.np6.key import secret_forms


def run_cli(tmp_path: Path, url: str, key: str, *jobs: Path):
    env = {**os.environ, "NP6_API_KEY": key, "NP6_BASE_URL": url}
    args = ["run", *jobs, "--config", settings_file(tmp_path), "--log-format", "json", "-v"]
    args += ["--report-json", tmp_path / "report.json", "--summary-md", tmp_path / "summary.md"]
    return run_process(args, env, cwd=tmp_path)


def every_output(tmp_path: Path, result) -> str:  # type: ignore[no-untyped-def]
    """What the run printed, and every file it left: state, journal, history, report."""
    files = [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    return "\n".join([result.stdout, result.stderr, *files])


def nothing_acknowledged(tmp_path: Path) -> bool:
    state = tmp_path / "state" / "list.parquet"
    return not state.exists() or pq.read_table(state).num_rows == 0


@pytest.mark.parametrize("status", [307, 302])
def test_a_redirect_fails_the_job_and_the_other_host_receives_nothing(
    tmp_path: Path, status: int
) -> None:
    with Loopback(lambda r: Answer(200, b"1"), host="127.0.0.2") as other:

        def redirect(request: Request) -> Answer:
            where = f"{other.url}{request.path}?token=s3cr3t-token"
            return Answer(status, headers={"Location": where})

        with Loopback(redirect) as np6:
            write_csv(tmp_path / "list.csv", emails(0, 300))
            result = run_cli(tmp_path, np6.url, API_KEY, make_job(tmp_path))
    assert result.returncode == 1, result.stderr
    assert other.requests == []
    assert len(np6.requests) == 1  # the segment's description, redirected; nothing more
    report = json.loads((tmp_path / "report.json").read_text())
    (job,) = report["jobs"]
    assert f"HTTP {status}" in job["error"]
    assert f"redirect to {other.url}/segments/{SEGMENT};" in job["error"]
    output = every_output(tmp_path, result)
    assert "s3cr3t-token" not in output and API_KEY not in output
    assert nothing_acknowledged(tmp_path)


def echo(request: Request) -> Answer:
    """A 400 that echoes the key in the form and at the offset the segment id names:
    segment 1FO, F the form (1 raw, 2 JSON, 3 URL), O the offset (0 start, 1 the cut)."""
    key = request.headers["X-Key"]
    segment = int(request.path.split("/")[2])
    form, straddle = divmod(segment - 100, 10)
    before, form_of_key, after = {
        1: ("", key, ""),
        2: ('{"headers": {"X-Key": "', json.dumps(key)[1:-1], '"}}'),
        3: ("GET https://np6.test/segments?key=", quote(key, safe=""), ""),
    }[form]
    padding = "p" * (195 - len(before)) if straddle else ""
    text = before + form_of_key + after
    return Answer(400, (padding + text + " end").encode(), {"Content-Type": "text/plain"})


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k3y-" + "a1" * 14, id="plain"),
        pytest.param('q"uo\\te/sl' + "b" * 20, id="quote-backslash-slash"),
        pytest.param("sp ace+%2F&=?é" + "c" * 12, id="url-specials-latin1"),
        pytest.param("L0ng" * 70, id="longer-than-the-cut"),
    ],
)
def test_no_form_of_the_key_reaches_any_output(tmp_path: Path, key: str) -> None:
    """The client's own redaction is the primary guard (sync/np6/key.py): it runs on the
    body before the body is shortened, so no output downstream ever holds the key."""
    write_csv(tmp_path / "list.csv", emails(0, 10))
    jobs = [
        make_job(tmp_path, name=f"echo{form}{straddle}", segment_id=100 + form * 10 + straddle)
        for form in (1, 2, 3)
        for straddle in (0, 1)
    ]
    with Loopback(echo) as np6:
        result = run_cli(tmp_path, np6.url, key, *jobs)
    assert result.returncode == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert all("HTTP 400" in job["error"] for job in report["jobs"])
    assert all("[reda" in job["error"] for job in report["jobs"])  # cut after redaction
    output = every_output(tmp_path, result)
    assert (tmp_path / "summary.md").exists() and list(tmp_path.rglob("*.history.jsonl"))
    for form in secret_forms(key):
        assert form not in output
    assert key[:8] not in output  # not even the part before a cut


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        pytest.param(API_KEY[:4] + "\x01" + API_KEY[4:], "a control character", id="control"),
        pytest.param(API_KEY + "\nsecond-line", "a control character", id="inner-newline"),
        pytest.param(API_KEY + "\u2019", "a character outside Latin-1", id="non-latin1"),
        pytest.param("  \n", "is not set", id="blank"),
    ],
)
def test_a_key_that_cannot_be_a_header_is_refused_at_start(
    cli, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    monkeypatch.setenv("NP6_API_KEY", key)
    write_csv(tmp_path / "list.csv", emails(0, 10))
    result = cli("run", make_job(tmp_path))
    assert result.code == 2
    assert problem in result.err
    assert API_KEY not in result.out + result.err
    assert emulator.calls == []


def test_surrounding_whitespace_of_the_key_is_dropped(
    cli, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NP6_API_KEY", f" {API_KEY}\n")  # a secret made from a file
    write_csv(tmp_path / "list.csv", emails(0, 10))
    result = cli("run", make_job(tmp_path))
    assert result.code == 0, result.err
    assert len(emulator.members(SEGMENT)) == 10


def test_plain_http_off_loopback_needs_a_setting(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NP6_BASE_URL", "http://np6.example")
    write_csv(tmp_path / "list.csv", emails(0, 10))
    job = make_job(tmp_path)
    refused = cli("run", job, "--dry-run")
    assert refused.code == 2
    assert "plain http to np6.example would send the API key in clear" in refused.err
    assert "allow_plain_http: true" in refused.err
    config = tmp_path / "np6.yaml"
    config.write_text(yaml.safe_dump({"allow_plain_http": True}))
    assert cli("run", job, "--dry-run", "--config", config).code == 0


def test_the_log_handler_redacts_every_form_too() -> None:
    """The second guard: records of other libraries never pass through the client."""
    import logging

    from sync.console.logs import RedactFilter

    key = 'q"uo\\te/ é'
    redactor = RedactFilter([key])
    for text in (key, json.dumps({"k": key}), "?key=" + quote(key, safe=""), quote(key)):
        record = logging.LogRecord("urllib3", logging.DEBUG, "", 0, "sent %s", (text,), None)
        redactor.filter(record)
        assert "[redacted]" in record.getMessage()
        assert all(form not in record.getMessage() for form in secret_forms(key))
