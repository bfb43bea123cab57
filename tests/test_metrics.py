"""Prometheus metrics: the textfile, the Pushgateway push, and what they never do (fail a run)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import emails, make_job, write_csv
from sync.commands.metrics import push_metrics
from sync.report.metrics import INFO_LABELS, PREFIX, SERIES, JobRun, registry_for
from sync.report.model import JobReport
from sync.state.history import read_history

EVERY_SERIES = {PREFIX + series.name for series in SERIES}


def samples(text: str, pushed: str | None = None) -> dict[tuple[str, str], dict[str, float]]:
    """{(job, series): {method or "": value}} of an exposition text; ``pushed``: the job
    of a push, whose group gives the job and segment labels (the series carry none)."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            own = set(sample.labels) - {"method", *INFO_LABELS}
            assert own == (set() if pushed else {"job", "segment"}), sample
            key = (pushed or sample.labels["job"], sample.name)
            found.setdefault(key, {})[sample.labels.get("method", "")] = sample.value
    return found


def info(found: dict[tuple[str, str], dict[str, float]], text: str, job: str) -> dict[str, str]:
    """The labels of a job's np6sync_last_run_info."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("last_run_info") and sample.labels.get("job") == job:
                return {k: sample.labels[k] for k in INFO_LABELS}
    raise AssertionError(f"no last_run_info for {job}")


def three_jobs(folder: Path) -> list[Path]:
    """A job that succeeds, one a safeguard refuses, and one NP6 fails (unknown segment)."""
    write_csv(folder / "list.csv", emails(0, 120))
    return [
        make_job(folder, name="ok"),
        make_job(folder, name="refused", segment_id=99, sync={"min_rows": 1000}),
        make_job(folder, name="failed", segment_id=555),
    ]


def test_the_textfile_holds_every_series_of_each_job(cli, tmp_path: Path) -> None:
    jobs = three_jobs(tmp_path)
    metrics = tmp_path / "np6sync.prom"
    result = cli("run", *jobs, "--metrics-file", metrics)
    assert result.code == 3, result.err  # the worst job's exit code, metrics or not
    assert metrics.stat().st_mode & 0o777 == 0o644  # the node exporter runs as another user
    found = samples(metrics.read_text())
    for job in ("ok", "refused", "failed"):
        assert {name for j, name in found if j == job} == EVERY_SERIES, job
    assert found["ok", "np6sync_targets_added"][""] == 120
    assert found["ok", "np6sync_requests"] == {"put": 3, "delete": 0, "post": 0}
    assert found["ok", "np6sync_rows_read"][""] == 120
    assert found["refused", "np6sync_exit_code"][""] == 3
    assert found["failed", "np6sync_exit_code"][""] == 2  # a segment NP6 does not know
    assert found["failed", "np6sync_last_success_timestamp_seconds"][""] == 0  # never
    text = metrics.read_text()
    assert info(found, text, "ok") == {"status": "succeeded", "phase": "done", "reason": ""}
    assert info(found, text, "refused") == {"status": "refused", "phase": "plan", "reason": ""}
    failed = {"status": "failed", "phase": "preflight", "reason": "segment"}
    assert info(found, text, "failed") == failed
    ok_success = found["ok", "np6sync_last_success_timestamp_seconds"][""]
    assert ok_success == found["ok", "np6sync_last_run_timestamp_seconds"][""]
    assert not list(tmp_path.glob("np6sync.prom.*"))  # no temporary file left


def test_the_last_success_survives_a_failed_run(cli, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    write_csv(tmp_path / "list.csv", emails(0, 10))
    assert cli("run", job).code == 0
    (tmp_path / "list.csv").unlink()
    metrics = tmp_path / "m.prom"
    assert cli("run", job, "--metrics-file", metrics).code == 2
    found = samples(metrics.read_text())
    history = read_history(tmp_path / "state" / "list.parquet")
    success = datetime.fromisoformat(history[0]["finished_at"]).timestamp()
    assert [entry["status"] for entry in history] == ["succeeded", "failed"]
    assert found["list", "np6sync_last_success_timestamp_seconds"][""] == success
    assert found["list", "np6sync_last_run_timestamp_seconds"][""] > success
    assert found["list", "np6sync_exit_code"][""] == 2


def test_a_history_that_cannot_be_read_leaves_the_last_success_out() -> None:
    report = JobReport("list", 1234, status="failed", exit_code=1)
    text = registry_for([JobRun(report, datetime.now(UTC), None)])
    from prometheus_client import generate_latest

    names = {name for _, name in samples(generate_latest(text).decode())}
    assert names == EVERY_SERIES - {"np6sync_last_success_timestamp_seconds"}


class Gateway(ThreadingHTTPServer):
    """A stand-in Pushgateway on a loopback port: records each request."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.status, self.location = status, location
        super().__init__(("127.0.0.1", 0), _GatewayHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _GatewayHandler(BaseHTTPRequestHandler):
    server: Gateway

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.command, self.path, dict(self.headers), body))
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    server = Gateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_push_carries_every_series_grouped_by_job(cli, tmp_path: Path, gateway) -> None:
    jobs = three_jobs(tmp_path)
    metrics = tmp_path / "m.prom"
    result = cli("run", *jobs, "--pushgateway", gateway.url, "--metrics-file", metrics)
    assert result.code == 3
    paths = {path: body for _, path, _, body in gateway.received}
    assert set(paths) == {
        "/metrics/job/ok/segment/1234",
        "/metrics/job/refused/segment/99",
        "/metrics/job/failed/segment/555",
    }
    assert {method for method, *_ in gateway.received} == {"PUT"}  # replaces the group
    in_file = samples(metrics.read_text())
    for path, body in paths.items():
        pushed = samples(body.decode(), pushed=path.split("/")[3])
        assert {name for _, name in pushed} == EVERY_SERIES
        for key, values in pushed.items():
            assert in_file[key] == values, key


def test_a_push_sends_credentials_from_the_environment(
    cli, tmp_path: Path, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NP6_PUSHGATEWAY_USER", "prom")
    monkeypatch.setenv("NP6_PUSHGATEWAY_PASSWORD", "s3cret-pw")
    write_csv(tmp_path / "list.csv", emails(0, 3))
    assert cli("run", make_job(tmp_path), "--pushgateway", gateway.url).code == 0
    [(_, _, headers, _)] = gateway.received
    assert headers["Authorization"] == "Basic cHJvbTpzM2NyZXQtcHc="  # prom:s3cret-pw


def test_a_redirect_is_not_followed_with_the_credentials(
    cli, tmp_path: Path, gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    redirecting = Gateway(status=307, location=gateway.url + "/metrics/job/list/segment/1234")
    threading.Thread(target=redirecting.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("NP6_PUSHGATEWAY_USER", "prom")
        monkeypatch.setenv("NP6_PUSHGATEWAY_PASSWORD", "s3cret-pw")
        write_csv(tmp_path / "list.csv", emails(0, 3))
        result = cli("run", make_job(tmp_path), "--pushgateway", redirecting.url)
    finally:
        redirecting.shutdown()
        redirecting.server_close()
    assert result.code == 0
    assert len(redirecting.received) == 1
    assert gateway.received == []
    assert "were not pushed" in caplog.text
    assert "s3cret-pw" not in caplog.text + result.err + result.out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_gateway_that_is_down_leaves_the_exit_code_alone(
    cli, tmp_path: Path, emulator, caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 5))
    gateway = f"http://127.0.0.1:{closed_port()}"
    result = cli("run", make_job(tmp_path), "--pushgateway", gateway)
    assert result.code == 0
    assert "the metrics of list were not pushed" in caplog.text
    assert len(emulator.members(1234)) == 5


def test_a_gateway_that_hangs_times_out() -> None:
    # A socket that listens but never answers: the push gives up after its timeout.
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen()
        url = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        report = JobReport("list", 1234, status="succeeded")
        assert not push_metrics(url, [JobRun(report, datetime.now(UTC), 0.0)], {}, timeout=0.2)


def test_a_gateway_that_is_down_is_tried_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    runs = [
        JobRun(JobReport(name, 1234, status="succeeded"), datetime.now(UTC), 0.0)
        for name in ("a", "b", "c")
    ]
    assert not push_metrics(f"http://127.0.0.1:{closed_port()}", runs, {}, timeout=1)
    assert "the metrics of a and 2 more job(s) were not pushed" in caplog.text


def test_credentials_in_the_url_go_in_a_header_not_in_the_logs(
    cli, tmp_path: Path, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 3))
    url = gateway.url.replace("http://", "http://prom:url-pw@")
    assert cli("run", make_job(tmp_path), "--pushgateway", url).code == 0
    [(_, path, headers, _)] = gateway.received
    assert path == "/metrics/job/list/segment/1234"
    assert headers["Authorization"] == "Basic cHJvbTp1cmwtcHc="  # prom:url-pw
    assert "url-pw" not in caplog.text
