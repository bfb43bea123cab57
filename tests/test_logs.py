from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sync.console.logs import (
    REDACTED,
    JsonFormatter,
    RedactFilter,
    add_secret,
    resolve_format,
    setup_logging,
)

SECRET = "sk-test-5f1c9a0b"  # noqa: S105 - a made-up key to redact
NAMES = ("", "np6sync", "urllib3")


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide state: give it back to the other tests."""
    loggers = [logging.getLogger(name) for name in NAMES]
    levels = [logger.level for logger in loggers]
    handlers = list(loggers[0].handlers)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    root = loggers[0]
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_envelope_and_the_structured_fields() -> None:
    stream = io.StringIO()
    setup_logging("json", 0, False, stream=stream)
    log = logging.getLogger("np6sync.job.run")
    log.info(
        "pushed %d chunks",
        3,
        extra={
            "job": "newsletter-fr",
            "phase": "push",
            "counts": {"added": 250, "removed": 0},
            "request_id": "req-42",
        },
    )
    log.warning("second line")

    first, second = json_lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "np6sync.job.run"
    assert first["msg"] == "pushed 3 chunks"
    assert first["job"] == "newsletter-fr"
    assert first["phase"] == "push"
    assert first["counts"] == {"added": 250, "removed": 0}
    assert first["request_id"] == "req-42"
    stamp = datetime.fromisoformat(first["ts"])
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert second["msg"] == "second line"
    assert "job" not in second


def test_json_drops_fields_it_cannot_serialise_and_keeps_its_envelope() -> None:
    record = logging.LogRecord("np6sync", logging.INFO, __file__, 1, "hello", (), None)
    record.__dict__.update({"handle": object(), "level": "spoofed", "size": 12})

    entry = json.loads(JsonFormatter().format(record))

    assert entry["level"] == "INFO"
    assert entry["size"] == 12
    assert "handle" not in entry
    assert set(entry) == {"ts", "level", "logger", "msg", "size"}


def test_json_formats_an_exception_into_one_line() -> None:
    stream = io.StringIO()
    setup_logging("json", 0, False, stream=stream)
    try:
        raise RuntimeError("NP6 said no")
    except RuntimeError:
        logging.getLogger("np6sync").exception("push failed")

    (entry,) = json_lines(stream)
    assert "Traceback" in entry["exc"]
    assert "RuntimeError: NP6 said no" in entry["exc"]


@pytest.mark.parametrize(
    ("fmt", "stream", "expected"),
    [
        pytest.param("auto", io.StringIO(), "json", id="auto-pipe"),
        pytest.param("auto", TtyStream(), "text", id="auto-tty"),
        pytest.param("text", io.StringIO(), "text", id="text-pipe"),
        pytest.param("json", TtyStream(), "json", id="json-tty"),
    ],
)
def test_format_choice(fmt: Any, stream: io.StringIO, expected: str) -> None:
    assert resolve_format(fmt, stream) == expected
    setup_logging(fmt, 0, False, stream=stream)
    logging.getLogger("np6sync").info("hello")
    line = stream.getvalue().strip()
    if expected == "json":
        assert json.loads(line)["msg"] == "hello"
    else:
        assert line.endswith("INFO np6sync: hello")


ERRORS = {"own error", "lib error"}
DEFAULT = ERRORS | {"own warning", "own info", "lib warning"}


@pytest.mark.parametrize(
    ("verbosity", "quiet", "shown"),
    [
        pytest.param(0, True, ERRORS, id="quiet"),
        pytest.param(2, True, ERRORS, id="quiet-wins-over-vv"),
        pytest.param(0, False, DEFAULT, id="default"),
        pytest.param(1, False, DEFAULT | {"own debug"}, id="-v"),
        pytest.param(2, False, DEFAULT | {"own debug", "lib info", "lib debug"}, id="-vv"),
    ],
)
def test_level_mapping(verbosity: int, quiet: bool, shown: set[str]) -> None:
    stream = io.StringIO()
    setup_logging("json", verbosity, quiet, stream=stream)
    own, lib = logging.getLogger("np6sync.push"), logging.getLogger("urllib3.connectionpool")
    for name, logger in (("own", own), ("lib", lib)):
        for level in ("debug", "info", "warning", "error"):
            getattr(logger, level)(f"{name} {level}")

    assert {entry["msg"] for entry in json_lines(stream)} == shown


def test_a_second_setup_replaces_the_first_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("json", 0, False, stream=first)
    setup_logging("text", 0, False, stream=second)
    logging.getLogger("np6sync").info("once")

    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_redacts_the_message_and_its_args() -> None:
    stream = io.StringIO()
    setup_logging("json", 0, False, stream=stream, secrets=[SECRET])
    log = logging.getLogger("np6sync")
    log.info(f"key is {SECRET}")
    log.info("key is %s", SECRET)
    # Split across the format string and an argument: only the formatted text shows it.
    log.info(SECRET[:5] + "%s", SECRET[5:])
    log.info("%(key)s in a mapping", {"key": SECRET})

    messages = [entry["msg"] for entry in json_lines(stream)]
    assert messages == [
        f"key is {REDACTED}",
        f"key is {REDACTED}",
        REDACTED,
        f"{REDACTED} in a mapping",
    ]
    assert SECRET not in stream.getvalue()


def test_redacts_extra_fields_at_any_depth() -> None:
    stream = io.StringIO()
    setup_logging("json", 0, False, stream=stream, secrets=[SECRET])
    logging.getLogger("np6sync").info(
        "call",
        extra={
            "headers": {"X-Api-Key": SECRET, "Accept": "application/json"},
            "urls": [f"https://np6.test/?key={SECRET}"],
            "pair": ("key", SECRET),
        },
    )

    (entry,) = json_lines(stream)
    assert entry["headers"] == {"X-Api-Key": REDACTED, "Accept": "application/json"}
    assert entry["urls"] == [f"https://np6.test/?key={REDACTED}"]
    assert entry["pair"] == ["key", REDACTED]
    assert SECRET not in stream.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_redacts_exception_tracebacks(fmt: Any) -> None:
    stream = io.StringIO()
    setup_logging(fmt, 0, False, stream=stream, secrets=[SECRET])
    try:
        raise ValueError(f"401 for https://np6.test/?key={SECRET}")
    except ValueError:
        logging.getLogger("np6sync").exception("call failed")

    output = stream.getvalue()
    assert SECRET not in output
    assert f"key={REDACTED}" in output
    assert "Traceback" in output


def test_redacts_other_libraries_and_the_longest_secret_first() -> None:
    stream = io.StringIO()
    longer = SECRET + "-extended"
    setup_logging("json", 2, False, stream=stream, secrets=[SECRET, longer])
    logging.getLogger("urllib3.connectionpool").debug("GET /?key=%s", longer)

    (entry,) = json_lines(stream)
    assert entry["msg"] == f"GET /?key={REDACTED}"


def test_a_secret_added_after_setup_is_redacted_from_then_on() -> None:
    stream = io.StringIO()
    setup_logging("json", 0, False, stream=stream)
    add_secret("")  # an unset key must not redact every gap between characters
    add_secret(SECRET)
    logging.getLogger("np6sync").info("key %s, gaps intact", SECRET)

    (entry,) = json_lines(stream)
    assert entry["msg"] == f"key {REDACTED}, gaps intact"


def test_a_bad_format_string_leaves_nothing_secret_for_the_error_report() -> None:
    # Handler.handleError prints the record's msg and args: they must be redacted already.
    record = logging.LogRecord(
        "np6sync", logging.INFO, __file__, 1, f"{SECRET} %d", ("not a number", SECRET), None
    )

    assert RedactFilter([SECRET]).filter(record)

    assert record.msg == f"{REDACTED} %d"
    assert record.args == ("not a number", REDACTED)
