"""What a source's file name says: its format and its compression, from one suffix table.

The job loader and the readers both ask here, so that they never disagree about a name
(``x.parquet.gz`` is a compressed Parquet file to both; the reader refuses it). No
import of pyarrow: the job loader runs on every command, ``--help`` included.
"""

from __future__ import annotations

import re
from typing import Literal

Format = Literal["csv", "parquet"]

FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Suffix -> pyarrow's codec name; zip is an archive that np6-sync opens itself.
COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zip": "zip"}


def compression_of(name: str) -> str | None:
    """``gzip`` for ``list.csv.gz``; None for a name with no compression suffix."""
    lowered = name.lower()
    return next((c for s, c in COMPRESSIONS.items() if lowered.endswith(s)), None)


def infer_format(name: str) -> Format | None:
    """csv or parquet from the file name (compression suffix aside), or None."""
    lowered = name.lower()
    for suffix in COMPRESSIONS:
        if lowered.endswith(suffix):
            lowered = lowered.removesuffix(suffix)
            break
    return next((f for s, f in FORMATS.items() if lowered.endswith(s)), None)


def expected_names() -> str:
    """The names a message lists when the format cannot be told from one."""
    csv = [s for s, f in FORMATS.items() if f == "csv"]
    parquet = [s for s, f in FORMATS.items() if f == "parquet"]
    names = [csv[0], *(csv[0] + c for c in COMPRESSIONS), *csv[1:], *parquet]
    return ", ".join(names[:-1]) + f" or {names[-1]}"


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(path: str) -> str | None:
    """``s3`` for ``s3://bucket/key``; None for a local path."""
    match = _URL.match(path)
    return match.group(1).lower() if match else None
