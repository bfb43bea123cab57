"""Where a list's personal data may appear, and what an unwritable output may change.

P#10: the list's values appear only in the 0600 files (state, journal, rejects, listings,
history but its look-up values) and in output a flag explicitly asked for
(``validate --samples N``). Each test sends distinctive e-mails through a failure path and
looks for every one of them, in every form a server or a library may echo it in, in
everything a person or a collector can see: stdout, stderr, the JSON report, the Markdown
summary, the history, the exceptions raised through the Python API, and its log records.

P#11: a sync's outcome does not depend on its stdout: the report is written, the exit code
is the sync's, and a stop signal still stops the jobs when stderr is broken too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from test_reliability import wait_for

import sync
from conftest import API_KEY, SEGMENT, emails, make_job, settings_file, write_csv
from sync.console.logs import OWN_LOGGERS
from sync.emulator import Emulator, make_contacts
from sync.errors import Np6SyncError
from sync.np6.key import without_values

# Non-ASCII, a plus and an at sign: each of the forms below differs from the others.
VALUES = [f"Zoë.qx{n:04d}+privé@exämple.org" for n in range(40)]
# A fragment of each value that no encoding changes: a value cut short is seen too.
TOKEN = re.compile(r"qx\d{4}", re.IGNORECASE)
QUICK_RETRIES = {"initial_wait": 0.001, "max_wait": 0.01, "max_attempts": 2}


def forms(value: str) -> set[str]:
    """``value`` raw, URL-encoded (either hex case) and JSON-escaped."""
    found = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return found | {re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), f) for f in found}


def leaks(outputs: dict[str, str]) -> dict[str, list[str]]:
    """Each output that shows a value, in any form, with what it shows."""
    found: dict[str, list[str]] = {}
    for name, text in outputs.items():
        lowered = text.lower()
        shown = sorted({f for v in VALUES for f in forms(v) if f.lower() in lowered})
        shown += sorted(set(TOKEN.findall(text)))
        if shown:
            found[name] = shown
    return found


def files_shown(folder: Path) -> dict[str, str]:
    """The reports and the history: outputs, unlike the state's private files."""
    return {
        str(p.relative_to(folder)): p.read_text(encoding="utf-8")
        for p in folder.rglob("*")
        if p.is_file() and (p.suffix in (".json", ".md") or p.name.endswith(".history.jsonl"))
    }


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """Contacts for every value; every error answer quotes the request it answers."""
    with Emulator(
        API_KEY, segments=[SEGMENT], contacts=make_contacts(VALUES), echo_request_on_error=True
    ) as server:
        yield server


def _job(folder: Path, values: list[str], **sync_settings: Any) -> Path:
    write_csv(folder / "list.csv", [[v] for v in values])
    return make_job(
        folder, sync={"max_removed_ratio": 1.0, "removals": "per_target", **sync_settings}
    )


FAILING_CALLS = [
    pytest.param("GET /targets?", id="look-up"),
    pytest.param("PUT /segments/", id="put"),
]


def _filled_then_failing(folder: Path, emulator: Emulator, cli, call: str) -> tuple[Path, Path]:
    """A segment holding 35 values; the next run adds 5 and removes 5, and ``call``
    answers 503 once (a retry warning), then 500 until the job fails."""
    config = settings_file(folder, retry=QUICK_RETRIES)
    # No look-up sample: the ids of the values leaving are looked up when they leave.
    job = _job(folder, VALUES[5:], lookup_sample=0)
    assert cli("run", job, "--config", config).code == 0
    _job(folder, VALUES[:35], lookup_sample=0)
    emulator.inject("503", *["500"] * 40, call=call)
    return job, config


@pytest.mark.parametrize("call", FAILING_CALLS)
def test_failing_calls_echoing_values_show_none_on_the_command_line(
    cli, emulator: Emulator, tmp_path: Path, call: str
) -> None:
    job, config = _filled_then_failing(tmp_path, emulator, cli, call)
    extra = ("--report-json", tmp_path / "report.json", "--summary-md", tmp_path / "summary.md")
    result = cli("run", job, "--config", config, "-vv", "--log-format", "text", *extra)
    assert result.code == 1, result.out + result.err
    assert f"{call.split('?')[0]}" in result.err and "retry 1" in result.err  # it was retried
    shown = {"stdout": result.out, "stderr": result.err, **files_shown(tmp_path)}
    assert any(name.endswith(".history.jsonl") for name in shown)
    assert leaks(shown) == {}


def test_check_looking_values_up_shows_none(cli, emulator: Emulator, tmp_path: Path) -> None:
    config = settings_file(tmp_path, retry=QUICK_RETRIES)
    job = _job(tmp_path, VALUES)
    emulator.inject("503", *["500"] * 40, call="GET /targets?")
    result = cli("check", job, "--config", config, "-vv", "--log-format", "json")
    assert result.code != 0
    assert "GET /targets" in result.out + result.err
    assert leaks({"stdout": result.out, "stderr": result.err}) == {}


class _Records(logging.Handler):
    """Every record a host's handler would get, as the text a formatter could make."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        extra = {k: v for k, v in record.__dict__.items() if k not in ("msg", "args")}
        self.texts.append(f"{record.getMessage()} {extra!r} {self.format(record)}")


@pytest.fixture
def host_logging() -> Iterator[Callable[[], _Records]]:
    """A host that logs everything at DEBUG, urllib3's records included, from when the
    test calls it on (the command line's own handler and levels gone)."""
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("", "np6sync", "urllib3")]
    levels = [logger.level for logger in loggers]
    root = loggers[0]

    def begin() -> _Records:
        for handler in [h for h in root.handlers if type(h).__module__ == "sync.console.logs"]:
            root.removeHandler(handler)
        root.addHandler(records)
        for logger in loggers:
            logger.setLevel(logging.DEBUG)
        return records

    yield begin
    root.removeHandler(records)
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.parametrize("call", FAILING_CALLS)
def test_failing_calls_echoing_values_show_none_through_the_api(
    cli, emulator: Emulator, tmp_path: Path, host_logging, call: str
) -> None:
    job, _ = _filled_then_failing(tmp_path, emulator, cli, call)
    records = host_logging()
    settings = {"base_url": emulator.url, "retry": QUICK_RETRIES}
    report = sync.run(job, api_key=API_KEY, settings=settings)
    assert report.exit_code == 1
    assert any("retry 1" in text for text in records.texts)
    assert any(" /targets?unicity=" in text for text in records.texts) == (
        call == "GET /targets?"  # urllib3 logged the look-ups' URLs
    )
    assert any("urllib3" in text for text in records.texts)
    shown = {f"record {i}": text for i, text in enumerate(records.texts)}
    shown["report"] = json.dumps(report.to_dict(), ensure_ascii=False)
    assert leaks(shown) == {}


def _raised(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


BAD_SOURCES = [
    pytest.param(
        "email;name\n" + "\n".join(f"{v};x" for v in VALUES[:3]) + f"\n{VALUES[3]};x;y\n",
        {"delimiter": ";"},
        "CSV parse error",
        id="csv-parse-error",
    ),
    pytest.param(
        "\n".join(VALUES[:4]) + "\n",
        {},
        "the first line holds e-mail addresses",
        id="no-header-line",
    ),
    pytest.param(
        "email,points\n"
        + "\n".join(f"{v},{n}" for n, v in enumerate(VALUES[:3]))
        # a value in the wrong column: the CAST fails on it
        + f"\n{VALUES[3]},{VALUES[4]}\n",
        {"where": "CAST(points AS INTEGER) > 0"},
        "source.where",
        id="cast-error",
    ),
]


@pytest.mark.parametrize(("text", "source", "problem"), BAD_SOURCES)
def test_a_source_that_fails_to_read_shows_no_value(
    cli, emulator: Emulator, tmp_path: Path, host_logging, text, source, problem
) -> None:
    (tmp_path / "list.csv").write_text(text, encoding="utf-8")
    job = make_job(tmp_path, source={"path": "list.csv", **source})
    report = tmp_path / "report.json"
    shown = {}
    for command in (("run", "--report-json", report, "-vv"), ("validate",)):
        result = cli(command[0], job, *command[1:])
        assert result.code == 2, result.out + result.err
        assert problem in result.out + result.err
        shown |= {f"{command[0]} stdout": result.out, f"{command[0]} stderr": result.err}
    # A problem of the source is raised before anything is sent; one of its rows, reported.
    records = host_logging()
    try:
        answer = sync.run(job, api_key=API_KEY, settings={"base_url": emulator.url})
    except Np6SyncError as raised:
        said = shown["raised"] = _raised(raised)
    else:
        assert answer.exit_code == 2
        said = shown["api report"] = json.dumps(answer.to_dict(), ensure_ascii=False)
    assert problem in said
    shown |= {f"record {i}": t for i, t in enumerate(records.texts)}
    shown |= files_shown(tmp_path)
    assert leaks(shown) == {}
    assert emulator.calls == []


def test_validate_and_init_show_samples_only_when_asked(cli, tmp_path: Path) -> None:
    write_csv(tmp_path / "list.csv", [[v] for v in VALUES])
    init = cli("init", "list.csv", "--segment", SEGMENT, "-o", "job.yaml")
    assert init.code == 0, init.out + init.err
    validate = cli("validate", "job.yaml")
    assert validate.code == 0 and "valid keys  40" in validate.out
    shown = {"init": init.out + init.err, "validate": validate.out + validate.err}
    assert leaks(shown) == {}
    asked = cli("validate", "job.yaml", "--samples", "2")  # the flag that asks for them
    assert asked.code == 0
    samples = [line.split(maxsplit=1)[1] for line in asked.out.splitlines() if "sample" in line]
    assert len(samples) == 2 and set(samples) <= {v.lower() for v in VALUES}  # init: lowercase


def test_unmapped_refused_names_no_value(cli, emulator: Emulator, tmp_path: Path) -> None:
    rows = [[v, "gold"] for v in VALUES[:5]] + [[VALUES[5], VALUES[6]]]  # a shifted row
    write_csv(tmp_path / "crm.csv", rows, header=("email", "tier"))
    body = {
        "name": "tiers",
        "source": {"path": "crm.csv"},
        "targets": {"columns": ["email"]},
        "segment_by": {"column": "tier", "segments": {"gold": SEGMENT}, "unmapped": "refuse"},
    }
    job = tmp_path / "tiers.yaml"
    job.write_text(yaml.safe_dump(body))
    result = cli("run", job, "--report-json", tmp_path / "report.json")
    assert result.code == 3
    assert "1 row(s) hold a tier value that segment_by.segments does not map" in result.err
    shown = {"stdout": result.out, "stderr": result.err, **files_shown(tmp_path)}
    assert leaks(shown) == {}


@pytest.mark.parametrize("value", [*VALUES[:1], "a", "7"])
def test_an_answer_loses_each_value_whole_in_every_form(value: str) -> None:
    body = " ".join(sorted(forms(value))) + f" plain {value.upper()} words 1789 a7"
    cleaned = without_values(body, [value])
    assert leaks({"body": cleaned}) == {} and "plain" in cleaned and "words 1789 a7" in cleaned
    assert not any(form in cleaned for form in forms(value) if len(form) > 1)


def test_a_value_cut_at_the_end_of_a_long_answer_goes_with_it() -> None:
    value = VALUES[0]
    cleaned = without_values("x" * ((1 << 16) - 12) + value, [value])
    assert len(cleaned) < 1 << 16 and not TOKEN.search(cleaned) and "qx" not in cleaned


def test_the_api_filter_is_on_every_logger_of_np6_sync() -> None:
    """A logger's filter sees only that logger's records: each logger needs it."""
    sources = "".join(p.read_text() for p in Path(sync.__file__).parent.rglob("*.py"))
    assert set(re.findall(r'getLogger\("(np6sync[^"]*)"\)', sources)) <= set(OWN_LOGGERS)


# --- P#11: an unwritable stdout ------------------------------------------------------------


def _process(args: list[Any], env: dict[str, str], **streams: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync", *map(str, args)], env=env, text=True, **streams
    )


def _broken_pipe() -> int:
    """The writing end of a pipe nobody reads: a write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize("stdout", ["full", "closed-pipe"])
def test_an_unwritable_stdout_leaves_the_outcome_as_it_is(
    tmp_path: Path, env: dict[str, str], start_emulator, stdout: str
) -> None:
    server = start_emulator(API_KEY, segments=[SEGMENT])
    env = {**env, "NP6_BASE_URL": server.url}
    write_csv(tmp_path / "list.csv", emails(0, 200))
    job, report = make_job(tmp_path), tmp_path / "report.json"
    out = os.open("/dev/full", os.O_WRONLY) if stdout == "full" else _broken_pipe()
    args = ["run", job, "--config", settings_file(tmp_path), "--report-json", report]
    process = _process(args, env, stdout=out, stderr=subprocess.PIPE)
    os.close(out)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(report.read_text())["jobs"][0]["status"] == "succeeded"
    assert len(server.members(SEGMENT)) == 200
    said = [line for line in err.splitlines() if "output" in line]
    assert len(said) == 1 and "np6-sync: " in said[0], err


def test_sigterm_stops_parallel_jobs_while_stderr_is_broken(
    tmp_path: Path, env: dict[str, str], start_emulator
) -> None:
    server = start_emulator(API_KEY, segments=[SEGMENT, 99], latency_s=0.01)
    env = {**env, "NP6_BASE_URL": server.url}
    jobs = []
    for name, segment, start in (("one", SEGMENT, 0), ("two", 99, 5000)):
        write_csv(tmp_path / f"{name}.csv", emails(start, start + 2000))
        jobs.append(
            make_job(tmp_path, name=name, segment_id=segment, source={"path": f"{name}.csv"})
        )
    report = tmp_path / "report.json"
    args = ["run", *jobs, "--parallel", "2", "--config", settings_file(tmp_path)]
    err = _broken_pipe()
    process = _process([*args, "--report-json", report], env, stdout=subprocess.PIPE, stderr=err)
    os.close(err)
    wait_for(lambda: sum(c.method == "PUT" and c.status == 200 for c in server.calls) >= 5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 1, out
    sent = len(server.members(SEGMENT)) + len(server.members(99))
    assert 0 < sent < 4000  # both jobs stopped sending
    assert "stopped by a signal" in out
    assert len(json.loads(report.read_text())["jobs"]) == 2
