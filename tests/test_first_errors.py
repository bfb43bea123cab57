"""The first errors a newcomer meets teach what to do: a refused key names the variable
that holds it and what it lacks, an unreachable host fails in seconds naming the host and
the cause, and a run that fails at any phase still writes its report and its metrics."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from test_client_layer import Scripted

from conftest import API_KEY, SEGMENT, emails, make_job, settings_file, write_csv
from sync.config import RetryConfig, Settings
from sync.errors import EXIT_FAILED, EXIT_USAGE, KeyRefusedError, RetriableApiError
from sync.np6.client import NP6Client, make_session
from sync.np6.retry import FirstContact, retry_policy, unreachable_cause


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report_of(path: Path) -> dict[str, object]:
    [job] = json.loads(path.read_text())["jobs"]
    assert isinstance(job, dict)
    return job


def info_labels(path: Path) -> dict[str, str]:
    """The labels of the one np6sync_last_run_info series of a textfile."""
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == "np6sync_last_run_info":
                return dict(sample.labels)
    raise AssertionError("no np6sync_last_run_info")


# --- a refused key ---------------------------------------------------------------------


def test_a_wrong_key_exits_2_at_once_naming_the_variable(tmp_path, emulator, cli, monkeypatch):
    monkeypatch.setenv("NP6_API_KEY", "not-the-key-0000")
    write_csv(tmp_path / "list.csv", emails(0, 10))
    config = settings_file(tmp_path)
    report, metrics = tmp_path / "r.json", tmp_path / "m.prom"
    started = time.monotonic()
    result = cli("run", make_job(tmp_path), "--config", config, "--report-json", report,
                 "--metrics-file", metrics)  # fmt: skip
    assert time.monotonic() - started < 5  # no retries: a 401 is not worth another try
    assert result.code == EXIT_USAGE, result.err
    assert "NP6 does not accept the API key in NP6_API_KEY" in result.err
    assert "nothing was sent" in result.err
    assert [c.method for c in emulator.calls] == ["GET"]  # the preflight's description only
    assert emulator.members(SEGMENT) == set()
    job = report_of(report)
    assert (job["exit_code"], job["phase"], job["error_kind"]) == (2, "preflight", "key_refused")
    labels = info_labels(metrics)
    assert (labels["job"], labels["segment"]) == ("list", str(SEGMENT))
    assert (labels["phase"], labels["reason"]) == ("preflight", "key_refused")


def test_the_message_names_the_variable_the_settings_name(tmp_path, emulator, cli, monkeypatch):
    monkeypatch.delenv("NP6_API_KEY")
    monkeypatch.setenv("ACME_NP6_KEY", "not-the-key-0000")
    write_csv(tmp_path / "list.csv", emails(0, 3))
    config = settings_file(tmp_path, api_key_env="ACME_NP6_KEY")
    result = cli("check", make_job(tmp_path), "--config", config)
    assert result.code == EXIT_USAGE
    assert "the API key in ACME_NP6_KEY" in result.err and "NP6_API_KEY" not in result.err


def scripted(answers: list) -> tuple[NP6Client, Scripted]:  # type: ignore[type-arg]
    settings = Settings(base_url="https://np6.invalid", retry=RetryConfig(max_attempts=3))
    session = make_session(settings, API_KEY)
    adapter = Scripted(answers)
    session.mount("https://", adapter)
    contact = FirstContact(settings.timeouts.first_contact)
    policy = lambda: retry_policy(  # noqa: E731
        settings.retry, 1e18, sleep=lambda s: None, contact=contact
    )
    return NP6Client(session, settings, API_KEY, policy=policy, contact=contact), adapter


@pytest.mark.parametrize(
    ("call", "right"),
    [
        pytest.param(lambda c: c.describe_segment(7), "read segment 7", id="describe"),
        pytest.param(lambda c: c.add_targets(7, ["a"]), "add targets to segment 7", id="put"),
        pytest.param(lambda c: c.clear_segment(7), "empty segment 7", id="clear"),
        pytest.param(lambda c: c.remove_target(7, "000PKXK4"), "remove targets from segment 7",
                     id="remove"),
        pytest.param(lambda c: c.lookup("x", 1), "look up contacts by unicity value", id="lookup"),
    ],
)  # fmt: skip
def test_a_403_says_what_the_key_lacks(call, right) -> None:
    client, _ = scripted([(403, {"x-request-id": "r-1"}, b"")])
    with pytest.raises(KeyRefusedError) as raised:
        call(client)
    assert raised.value.exit_code == EXIT_USAGE
    assert f"the API key in NP6_API_KEY lacks the right to {right}:" in str(raised.value)
    assert "the NP6 user it belongs to" in str(raised.value)


def test_a_401_once_sending_has_begun_exits_1() -> None:
    client, _ = scripted([(200, {}, b"50"), (401, {}, b"")])
    assert client.add_targets(7, ["a"] * 50) == 50
    with pytest.raises(KeyRefusedError) as raised:
        client.add_targets(7, ["b"] * 50)
    assert raised.value.exit_code == EXIT_FAILED
    assert "sending had begun" in str(raised.value)


# --- an unreachable host ---------------------------------------------------------------


def test_an_unreachable_host_fails_within_the_first_contact_budget(tmp_path, cli, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("NP6_BASE_URL", f"http://127.0.0.1:{port}")
    write_csv(tmp_path / "list.csv", emails(0, 10))
    # Retries as the other tests have them (quick, 30 attempts): the budget ends them.
    config = settings_file(tmp_path, timeouts={"first_contact": 1.5})
    config.write_text(config.read_text().replace("max_wait: 0.01", "max_wait: 0.2"))
    started = time.monotonic()
    result = cli("run", make_job(tmp_path), "--config", config, "--report-json", tmp_path / "r")
    elapsed = time.monotonic() - started
    assert result.code == EXIT_FAILED, result.err
    assert 1.0 < elapsed < 4, elapsed
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in result.err
    assert "given up within timeouts.first_contact (1.5 s)" in result.err
    job = report_of(tmp_path / "r")
    assert (job["phase"], job["error_kind"]) == ("preflight", "unreachable")


def test_the_first_contact_budget_is_10_seconds_by_default() -> None:
    assert Settings().timeouts.first_contact == 10.0


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        pytest.param(socket.gaierror(-2, "Name or service not known"), "DNS", id="dns"),
        pytest.param(ConnectionRefusedError(111, "refused"), "connection refused", id="refused"),
        pytest.param(requests.ConnectTimeout(TimeoutError("timed out")), "no connection within 5 s",
                     id="timeout"),
        pytest.param(OSError("something else"), "the connection failed (ConnectionError)",
                     id="other"),
    ],
)  # fmt: skip
def test_the_cause_of_an_unreachable_host_is_named(failure, cause) -> None:
    wrapped = requests.ConnectionError(failure)
    wrapped.__cause__ = failure
    assert unreachable_cause(wrapped, 5.0).startswith(cause)


def test_once_np6_has_answered_a_dropped_connection_is_retried_as_before() -> None:
    client, adapter = scripted(
        [(200, {}, b"[]"), requests.ConnectionError("reset"), requests.ConnectionError("reset"),
         requests.ConnectionError("reset")]
    )  # fmt: skip
    assert client.list_targets(7) == []
    with pytest.raises(RetriableApiError) as raised:
        client.list_targets(7)
    assert type(raised.value) is RetriableApiError  # not "unreachable": NP6 did answer
    assert len(adapter.sent) == 4  # max_attempts


def test_before_any_answer_the_budget_stops_the_retries() -> None:
    now = [0.0]
    contact = FirstContact(10.0, clock=lambda: now[0])
    assert contact.left() == 10.0
    now[0] = 9.0
    assert not contact.over(0.5) and contact.over(1.5)
    contact.answer()
    assert contact.left() is None and not contact.over(100.0)


# --- every failure has its report and its metrics --------------------------------------


@pytest.mark.parametrize(
    ("setup", "phase", "kind"),
    [
        pytest.param("settings", "settings", "config", id="bad-settings"),
        pytest.param("key", "key", "key_missing", id="key-missing"),
        pytest.param("job", "job", "config", id="bad-job"),
    ],
)
def test_a_run_that_fails_early_still_writes_its_report_and_metrics(
    tmp_path, emulator, cli, monkeypatch, setup, phase, kind
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 3))
    config = settings_file(tmp_path)
    job = make_job(tmp_path, name="news", segment_id=4321)
    if setup == "settings":
        config.write_text("concurency: 2\n")
    elif setup == "key":
        monkeypatch.delenv("NP6_API_KEY")
    else:
        job.write_text(job.read_text().replace("columns:", "colums:"))
    report, metrics, summary = tmp_path / "r.json", tmp_path / "m.prom", tmp_path / "s.md"
    result = cli("run", job, "--config", config, "--report-json", report,
                 "--metrics-file", metrics, "--summary-md", summary)  # fmt: skip
    assert result.code == EXIT_USAGE, result.err
    found = report_of(report)
    assert (found["name"], found["segment_id"]) == ("news", 4321)
    assert (found["phase"], found["error_kind"], found["exit_code"]) == (phase, kind, 2)
    assert found["status"] == "failed" and found["error"]
    labels = info_labels(metrics)
    assert labels == {"job": "news", "segment": "4321", "status": "failed", "phase": phase,
                      "reason": kind}  # fmt: skip
    assert "failed" in summary.read_text()
    assert emulator.calls == []


def test_a_key_that_may_read_but_not_write_exits_2_nothing_sent(tmp_path) -> None:
    """The common case of a read-only key: the preflight's GET passes, the first PUT is
    refused. Sending had begun for the runner, but NP6 took nothing: exit 2, fix the key."""
    from sync.config import load_job
    from sync.job.context import RunOptions
    from sync.job.run import run_job

    write_csv(tmp_path / "list.csv", emails(0, 10))
    job = load_job(make_job(tmp_path))
    described = (200, {}, b'{"id": 1234, "type": "static", "targetsCount": 0}')
    client, adapter = scripted([described, *[(403, {}, b"")] * 5])
    report = run_job(job, RunOptions(), lambda: client, concurrency=1)
    assert (report.exit_code, report.error_kind, report.phase) == (2, "key_refused", "send")
    assert "lacks the right to add targets to segment 1234" in (report.error or "")
    assert [r.method for r in adapter.sent] == ["GET", "PUT"]
    assert report.targets_accepted == 0


@pytest.mark.parametrize("option", ["--report-json", "--summary-md", "--metrics-file"])
def test_an_output_that_cannot_be_written_stops_the_run_before_sending(
    tmp_path: Path, emulator, cli, option: str
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 5))
    job = make_job(tmp_path)
    result = cli("run", job, "--config", settings_file(tmp_path), option, tmp_path / "no" / "x")
    assert result.code == 2 and "nothing was sent" in result.out + result.err
    assert emulator.calls == []
