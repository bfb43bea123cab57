"""Sources and states behind URLs (s3://, gs://, az://, http(s)://), through fsspec.

A URL source is downloaded to a temporary file that keeps its name (so the format and
compression are still told from it) and read by ``sources.read_source`` like any local
file. fsspec and the cloud backends are imported only here, only when a URL is used:
`np6-sync --help` must stay fast. Credentials come from each cloud's usual environment
(AWS_* variables, profiles or roles; GOOGLE_APPLICATION_CREDENTIALS; AZURE_STORAGE_*);
no message ever carries one (``display_url`` drops user info and query strings).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sync.errors import SourceError, UsageError, foreign_errors
from sync.read.csv_source import one_line
from sync.read.formats import url_scheme
from sync.read.sources import SourceSpec, SourceTable, read_source

# The extra of np6-sync that installs each scheme's fsspec backend.
EXTRAS = {"s3": "s3", "gs": "gcs", "az": "azure", "http": "http", "https": "http"}
_SECRET_NAMES = re.compile(r"SECRET|TOKEN|PASSWORD|ACCOUNT_KEY|CONNECTION_STRING|SAS", re.I)


def display_url(url: str) -> str:
    """The URL as messages show it: no user info, no query (signed URLs carry secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem serving ``url`` and the path it knows the object by.

    A missing backend is a UsageError telling which extra installs it.
    """
    scheme = url_scheme(url) or "file"
    try:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
    except ImportError:
        extra = EXTRAS.get(scheme, scheme)
        raise UsageError(
            f"{display_url(url)}: {scheme}:// needs `pip install np6-sync[{extra}]`"
        ) from None
    except ValueError as error:
        raise UsageError(f"{display_url(url)}: {describe(error)}") from None
    return fs, path


def read_remote_source(url: str, spec: SourceSpec, columns: list[str]) -> SourceTable:
    """Download the source to a temporary file, read it there; errors name the URL."""
    with downloaded(url) as local:
        return read_downloaded(local, url, spec, columns)


@contextmanager
def downloaded(url: str) -> Iterator[Path]:
    """The object at ``url`` as a temporary file (it keeps the object's name, which tells
    the format), removed at the end of the block."""
    name = PurePosixPath(urlsplit(url).path).name or "source"
    with tempfile.TemporaryDirectory(prefix="np6sync-source-") as folder:
        local = Path(folder) / name
        download(url, local)
        yield local


def read_downloaded(local: Path, url: str, spec: SourceSpec, columns: list[str]) -> SourceTable:
    """The downloaded copy of the source at ``url``, read; errors name the URL."""
    shown = display_url(url)
    try:
        table = read_source(replace(spec, path=local), columns)
    except SourceError as error:
        raise SourceError(str(error).replace(str(local), shown)) from None
    return SourceTable(table.table, table.first_row, shown)


def download(url: str, local: Path) -> None:
    """Copy the object at ``url`` to ``local``; SourceError names the URL and the reason."""
    fs, path = filesystem(url)
    shown = display_url(url)
    with foreign_errors(lambda why: SourceError(f"{shown}: cannot download: {why}"), describe):
        fs.get_file(path, str(local))
    if not local.is_file():
        raise SourceError(f"{display_url(url)}: cannot download: not a file")


def describe(error: BaseException) -> str:
    """One line saying what went wrong with a remote object, with no secret in it."""
    name = type(error).__name__
    if isinstance(error, FileNotFoundError):
        detail = one_line(error)
        text = f"not found ({detail})" if detail else "not found"
    elif isinstance(error, PermissionError):
        text = f"access denied ({one_line(error)})"
    elif name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
        text = (
            "no credentials found: set the cloud's usual environment (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE; GOOGLE_APPLICATION_CREDENTIALS; "
            "AZURE_STORAGE_*), or run with a role"
        )
    elif getattr(error, "status", None) in (401, 403):
        text = f"access denied (HTTP {getattr(error, 'status', '')})"
    elif getattr(error, "status", None) == 404:
        text = "not found"
    else:
        text = f"{name}: {one_line(error)}"
    return _redacted(text)


def _redacted(text: str) -> str:
    # Defence in depth: no library message should carry a secret, but none may leave here.
    text = re.sub(r"(https?://)[^/@\s]*@", r"\1", text)
    text = re.sub(r"(https?://[^\s?]*)\?\S*", r"\1", text)
    for name, value in os.environ.items():
        if _SECRET_NAMES.search(name) and len(value) >= 8:
            text = text.replace(value, "***")
    return text
