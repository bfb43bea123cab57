"""Builders for source files written into a test's tmp_path: nothing is committed."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa


def csv_text(
    rows: Sequence[Sequence[str]], delimiter: str = ",", lineterminator: str = "\r\n"
) -> str:
    """Rows as Python's csv module writes them (minimal quoting, doubled quotes)."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=lineterminator).writerows(rows)
    return buffer.getvalue()


def compress(data: bytes, suffix: str, member: str = "data.csv") -> bytes:
    """``data`` as a file with this compression suffix holds it."""
    if suffix == ".gz":
        return gzip.compress(data, mtime=0)
    if suffix == ".bz2":
        return bz2.compress(data)
    if suffix == ".zst":
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as stream:
            stream.write(data)
        return bytes(sink.getvalue().to_pybytes())
    if suffix == ".zip":
        return zip_bytes({member: data})
    return data


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name.endswith("/"):
                archive.writestr(zipfile.ZipInfo(name), b"")
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` compressed after the path's suffix."""
    path.write_bytes(compress(data, path.suffix.lower()))
    return path
