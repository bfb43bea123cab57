"""Write the run's Prometheus series to a node-exporter textfile and push them to a
Pushgateway. Neither ever fails a sync: a problem is logged, the exit code stays the run's.
"""

from __future__ import annotations

import argparse
import base64
import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sync.commands.common import output_path
from sync.errors import Np6SyncError

if TYPE_CHECKING:
    from sync.config import Job
    from sync.report.metrics import JobRun
    from sync.report.model import JobReport

log = logging.getLogger("np6sync.metrics")

PUSH_TIMEOUT_S = 5.0
USER_ENV = "NP6_PUSHGATEWAY_USER"
PASSWORD_ENV = "NP6_PUSHGATEWAY_PASSWORD"  # noqa: S105 (the name of a variable)


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-file",
        type=output_path,
        metavar="FILE",
        help="write Prometheus metrics in the node exporter's textfile format (*.prom; -: stdout)",
    )
    parser.add_argument(
        "--pushgateway",
        metavar="URL",
        help=f"push Prometheus metrics to this Pushgateway, one group per job (basic auth "
        f"from ${USER_ENV} and ${PASSWORD_ENV} when set)",
    )


def publish_metrics(
    args: argparse.Namespace,
    reports: Sequence[JobReport],
    jobs: Mapping[str, Job],
    environ: Mapping[str, str] = os.environ,
) -> None:
    """What ``--metrics-file`` and ``--pushgateway`` ask for, after the run."""
    metrics_file: Path | None = getattr(args, "metrics_file", None)
    gateway: str | None = getattr(args, "pushgateway", None)
    if metrics_file is None and gateway is None:
        return
    # Imported here: the Prometheus client is not needed by runs without metrics.
    from sync.report.metrics import JobRun

    finished_at = datetime.now(UTC)
    runs = [
        JobRun(report, finished_at, _last_success(jobs.get(report.name), report))
        for report in reports
    ]
    if metrics_file is not None:
        write_metrics_file(metrics_file, runs)
    if gateway is not None:
        push_metrics(gateway, runs, environ)


def write_metrics_file(path: Path, runs: Sequence[JobRun]) -> bool:
    from prometheus_client import generate_latest, write_to_textfile

    from sync.report.metrics import registry_for

    if str(path) == "-":  # stdout
        sys.stdout.write(generate_latest(registry_for(runs)).decode())
        return True
    try:
        # write_to_textfile writes a temporary file and renames it: a scrape never reads
        # half a file. The series are not personal data: the exporter may read them.
        write_to_textfile(str(path), registry_for(runs))
        path.chmod(0o644)
    except OSError as error:
        log.warning("the metrics file was not written: %s", error)
        return False
    return True


def push_metrics(
    gateway: str,
    runs: Sequence[JobRun],
    environ: Mapping[str, str] = os.environ,
    timeout: float = PUSH_TIMEOUT_S,
) -> bool:
    """One push per job, grouped by job and segment (a PUT replaces the group's series)."""
    from http.client import HTTPException

    from prometheus_client import push_to_gateway

    from sync.report.metrics import registry_for, segment_label

    url, handler = _gateway(gateway, environ)
    for number, run in enumerate(runs):
        try:
            push_to_gateway(
                url,
                job=run.report.name,
                registry=registry_for([run], grouped=True),
                grouping_key={"segment": segment_label(run.report)},
                timeout=timeout,
                handler=handler,
            )
        except (OSError, HTTPException, ValueError) as error:
            # A gateway that is down or hangs would make each job wait its timeout: stop.
            left = len(runs) - number - 1
            log.warning(
                "the metrics of %s%s were not pushed to %s: %s",
                run.report.name,
                f" and {left} more job(s)" if left else "",
                _display(url),
                error,
                extra={"job": run.report.name},
            )
            return False
    return True


Handler = Callable[..., Callable[[], None]]


def _gateway(gateway: str, environ: Mapping[str, str]) -> tuple[str, Handler]:
    """The URL without credentials, and a handler that sends them (from the URL or the
    environment) and never follows a redirect, which could carry them elsewhere."""
    parts = urlsplit(gateway if "://" in gateway else f"http://{gateway}")
    user = parts.username or environ.get(USER_ENV)
    password = parts.password or environ.get(PASSWORD_ENV, "")
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    if password:
        from sync.console.logs import add_secret

        add_secret(password)
    authorization = None
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        authorization = f"Basic {token}"

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def send() -> None:
            import urllib.request

            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            for name, value in headers:
                request.add_header(name, value)
            if authorization is not None:
                request.add_header("Authorization", authorization)
            with _opener().open(request, timeout=timeout) as response:
                if response.status >= 300:
                    raise OSError(f"HTTP {response.status} {response.reason}")

        return send

    return url, handler


@functools.cache
def _opener() -> Any:
    import urllib.request  # imported here: not needed by runs without a Pushgateway

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None  # urllib then raises the 3xx as an HTTPError

    return urllib.request.build_opener(NoRedirect())


def _display(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _last_success(job: Job | None, report: JobReport) -> float | None:
    """The end of the newest run that succeeded, from the history (0.0: none yet)."""
    from sync.report.metrics import SUCCESS

    if job is None:  # the job file did not load: where its history is is not known
        return None
    try:
        entries = _history(job)
    except (OSError, Np6SyncError) as error:
        log.warning("the run history was not read for the metrics: %s", error)
        return None
    for entry in reversed(entries):
        finished = entry.get("finished_at")
        if entry.get("status") in SUCCESS and isinstance(finished, str):
            try:
                return datetime.fromisoformat(finished).timestamp()
            except ValueError:
                continue
    return 0.0


def _history(job: Job) -> list[dict[str, Any]]:
    from sync.state.store import store_for

    return store_for(job).read_history()
