"""Logging set-up: text for people at a terminal, JSON lines for collectors, no secrets."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from sync.np6.key import REDACTED, secret_forms

LogFormat = Literal["auto", "text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The job a thread works for, in a run of jobs side by side (run --parallel): every record
# made in its context names it, a library's or a push worker's too.
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)
_ENVELOPE = ("ts", "level", "logger", "msg")


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["text", "json"]:
    """``auto`` means text for a person at a terminal, JSON for whatever collects the output."""
    if fmt == "auto":
        return "text" if is_terminal(stream) else "json"
    return fmt


def utc_iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key in _ENVELOPE or key.startswith("_"):
                continue
            if _serialisable(value):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def json_line(level: str, message: str, logger: str = "np6sync") -> str:
    """One JSON object, as JsonFormatter writes a record: for what is not a log record."""
    entry = {"ts": utc_iso(time.time()), "level": level, "logger": logger, "msg": message}
    return json.dumps(entry)


_stderr_format: list[Literal["text", "json"]] = []  # set by setup_logging


def say(text: str, level: str = "INFO") -> None:
    """A line for the person reading stderr (a failure, the table when stdout holds a
    report): as is in text, one JSON object under --log-format json, so that every line
    of stderr is one."""
    fmt = _stderr_format[-1] if _stderr_format else "text"  # logging not set up: as is
    text = _redact(text)
    try:  # best effort: a broken stderr loses the line, and nothing else
        stream = sys.stderr
        if stream is not None:
            print(json_line(level, text) if fmt == "json" else text, file=stream, flush=True)
    except (OSError, ValueError):  # ValueError: stderr closed by the caller
        pass


def _redact(text: str) -> str:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Handler):
            for f in handler.filters:
                if isinstance(f, RedactFilter):
                    text = f._text(text)
    return text


def _serialisable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):  # ValueError: circular references
        return False
    return True


_LOOKED_UP_VALUE = re.compile(r"unicity=[^\s&\"']+")


class RedactFilter(logging.Filter):
    """Replaces each secret in a record before any formatter sees it.

    It sits on the handler, not a logger, so records of every library (urllib3 logs URLs
    and headers at DEBUG) pass through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Redact ``secret`` in every form a server may echo it in (raw, JSON-escaped,
        URL-encoded). For the API key this is the second guard: the client redacts its
        own error text first (sync/np6/key.py)."""
        for form in secret_forms(secret):
            if form not in self.secrets:
                self.secrets.append(form)
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets.sort(key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it, with what is left here
            record.msg = self._text(str(record.msg))
            record.args = self._value(record.args)  # type: ignore[assignment]
        else:
            redacted = self._text(message)
            if redacted != message:
                # Formatting first catches a secret split across the message and its args.
                record.msg, record.args = redacted, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                record.__dict__[key] = self._value(value)
        if record.exc_info and not record.exc_text:
            # Formatted here so the traceback text, which repeats the exception's
            # message and may show local values, is redacted before any handler caches it.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._text(record.exc_text)
        if record.stack_info:
            record.stack_info = self._text(record.stack_info)
        return True

    def _text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        if "unicity=" in text:  # a look-up's URL (urllib3 logs it at -vv) names a person
            text = _LOOKED_UP_VALUE.sub("unicity=(value)", text)
        return text

    def _value(self, value: object) -> object:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            return {self._value(k): self._value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._value(v) for v in value)
        return value


class JobFilter(logging.Filter):
    """Names the job of ``current_job`` on records that do not name one."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        if job is not None and not hasattr(record, "job"):
            record.job = job
        return True


class _TextFormatter(logging.Formatter):
    """TEXT_FORMAT; in a run of jobs side by side, each line starts with its job."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job = getattr(record, "job", None)
        if current_job.get() is None or job is None:
            return text
        return f"[{job}] {text}"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler setup_logging installed, so a second call replaces it."""


def setup_logging(
    fmt: LogFormat,
    verbosity: int,
    quiet: bool,
    stream: TextIO | None = None,
    secrets: Sequence[str] = (),
) -> None:
    """Configure the np6sync loggers and one root handler writing to ``stream``.

    quiet: errors only. Default: np6sync at INFO, other libraries at WARNING. ``-v``: np6sync
    at DEBUG. ``-vv``: DEBUG everywhere (urllib3 then logs every request). quiet wins over -v.
    """
    # sys.stderr of this call: a default bound at import would outlive a replaced stderr.
    stream = stream or sys.stderr
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    handler = _Handler(stream)
    resolved = resolve_format(fmt, stream)
    _stderr_format[:] = [resolved]
    handler.setFormatter(JsonFormatter() if resolved == "json" else _TextFormatter(TEXT_FORMAT))
    # Python's warnings (a library's deprecation) become records: JSON lines too.
    logging.captureWarnings(True)
    handler.addFilter(JobFilter())
    handler.addFilter(RedactFilter(secrets))
    if quiet:
        # On the handler too: a library that sets its own logger's level still stays quiet.
        handler.setLevel(logging.ERROR)
        levels = (logging.ERROR, logging.ERROR, logging.ERROR)
    elif verbosity <= 0:
        levels = (logging.WARNING, logging.INFO, logging.WARNING)
    elif verbosity == 1:
        levels = (logging.WARNING, logging.DEBUG, logging.WARNING)
    else:
        levels = (logging.DEBUG, logging.DEBUG, logging.DEBUG)
    root_level, own_level, urllib3_level = levels
    root.setLevel(root_level)
    logging.getLogger("np6sync").setLevel(own_level)
    logging.getLogger("urllib3").setLevel(urllib3_level)
    root.addHandler(handler)


def add_secret(secret: str) -> None:
    """Redact ``secret`` from now on, for a secret known only after logging is set up."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _Handler):
            for f in handler.filters:
                if isinstance(f, RedactFilter):
                    f.add(secret)
    with _lock:
        for active in _on_loggers:
            active.add(secret)


# Every logger np6-sync's records come from, and urllib3's (it logs each URL at DEBUG, a
# look-up's value in it): a logger's filter sees the records of that logger only.
OWN_LOGGERS = (
    "np6sync",
    "np6sync.history",
    "np6sync.metrics",
    "np6sync.np6",
    "np6sync.preflight",
    "np6sync.progress",
    "np6sync.remote",
    "np6sync.run",
)
_LIBRARY_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.response")
_lock = threading.Lock()
_on_loggers: list[RedactFilter] = []


@contextmanager
def redacting_loggers() -> Iterator[None]:
    """For the Python API, which installs no handler: while it runs, a ``RedactFilter``
    on np6-sync's loggers and urllib3's, so that whatever handler the host has gets their
    records redacted (the API key, added by ``add_secret``; a looked-up value in a URL)."""
    names = {
        *OWN_LOGGERS,
        *_LIBRARY_LOGGERS,
        *(n for n in logging.root.manager.loggerDict if n.startswith(("np6sync.", "urllib3."))),
    }
    loggers = [logging.getLogger(name) for name in sorted(names)]
    redact = RedactFilter()
    with _lock:
        _on_loggers.append(redact)
    for logger in loggers:
        logger.addFilter(redact)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redact)
        with _lock:
            _on_loggers.remove(redact)
