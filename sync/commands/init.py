"""`np6-sync init SOURCE --segment-id ID`: a first job file, from the source's own columns.

The header (CSV) or schema (Parquet) names the columns; a sample of their values tells
an e-mail column from an id column. ``identify_by: id`` is proposed only for values that
look like NP6 target ids (8 uppercase letters or digits, such as ``000PKXK4``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sync.commands.common import is_stdout, output_path
from sync.errors import UsageError

SAMPLE_ROWS = 1000
# Columns whose values are sampled when no name tells: reading more would be slow on a
# wide file, and a key column is nearly always among the first.
MAX_SAMPLED = 20
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NP6_ID = re.compile(r"^[A-Z0-9]{8}$")
_EMAIL_NAMES = re.compile(r"e-?mail|courriel|\bmail", re.IGNORECASE)
_ID_NAMES = re.compile(r"(^|[_\W])(id|uid|guid|identifier|key)$|^id[_\W]|id$", re.IGNORECASE)
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # YAML reads it back as this string


def add_init_parser(
    commands: Any,  # argparse's subparsers action, a private type
    validate: Callable[[argparse.Namespace], int],
) -> None:
    init = commands.add_parser("init", help="write a job file for a source file")
    init.add_argument("source", metavar="SOURCE", help="a local CSV or Parquet file")
    init.add_argument(
        "--segment-id",
        type=_segment_id,
        required=True,
        metavar="ID",
        help="the NP6 segment's id, written into the job (nothing is asked of NP6)",
    )
    init.add_argument("--name", help="the job's name (default: the source file's name)")
    init.add_argument(
        "-o",
        "--output",
        type=output_path,
        metavar="JOB.yaml",
        help="default: jobs/<name>.yaml; -: stdout (then the job is not validated)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing job file")
    init.add_argument(
        "--encoding",
        metavar="ENC",
        help="a CSV's encoding, such as cp1252 (default: utf-8, or a guess when it is not)",
    )
    init.set_defaults(func=lambda args: run_init(args, validate))


def run_init(args: argparse.Namespace, validate: Callable[[argparse.Namespace], int]) -> int:
    from sync.read.formats import url_scheme

    if url_scheme(args.source):
        raise UsageError(f"{args.source}: init reads a local file; copy the file here first")
    source = Path(args.source)
    name = args.name or job_name(source)
    output: Path = args.output or Path("jobs") / f"{name}.yaml"
    to_stdout = is_stdout(output)
    fmt = source_format(source)
    encoding, guessed = csv_encoding(source, args.encoding) if fmt == "csv" else ("", False)
    if fmt == "parquet" and args.encoding is not None:
        raise UsageError("--encoding is for CSV sources: a Parquet file's text is UTF-8")
    columns, delimiter = read_columns(source, fmt, encoding or "utf-8")
    if guessed:
        from sync.console.logs import say

        notice = (
            f"{source}: not UTF-8: read as {encoding} (a guess: check the job's columns); "
            "pass --encoding to choose another"
        )
        say(notice, "WARNING") if to_stdout else print(notice)
    sample = sample_values(source, fmt, delimiter, columns, encoding or "utf-8")
    key = propose_key(columns, sample)
    text = job_text(
        name=name,
        segment_id=args.segment_id,
        source=_relative(source, Path.cwd() if to_stdout else output.parent),
        fmt=fmt,
        delimiter=delimiter,
        encoding=encoding,
        guessed=guessed,
        columns=columns,
        key=key,
    )
    if to_stdout:
        from sync.console.logs import say

        print(text, end="")
        say(f"job {name} -> segment {args.segment_id}; key: {key.why}")
        return 0
    write_new(output, text, force=args.force)
    print(f"{output}: job {name} -> segment {args.segment_id}; key: {key.why}")
    return validate(argparse.Namespace(jobs=[str(output)], samples=0))


@dataclass(frozen=True)
class KeyProposal:
    column: str
    identify_by: Literal["unicity", "id"]
    transforms: tuple[str, ...]
    why: str


def propose_key(columns: Sequence[str], sample: dict[str, list[str]]) -> KeyProposal:
    """NP6 ids first (the cheapest removals), then e-mails, then an id-like name."""
    for column in columns:
        values = sample.get(column, [])
        # A column of digits only is a customer number, not NP6 ids.
        np6_ids = all(_NP6_ID.match(v) for v in values) and not all(v.isdigit() for v in values)
        if values and np6_ids:
            why = f"{column!r} holds NP6 target ids (8 letters or digits)"
            return KeyProposal(column, "id", ("strip",), why)
    emails = {c: _share(sample.get(c, []), _EMAIL) for c in columns}
    best = max(columns, key=lambda c: (emails[c], bool(_EMAIL_NAMES.search(c))))
    if emails[best] >= 0.5:
        why = f"{best!r} holds e-mail addresses ({emails[best]:.0%} of the sample)"
        return KeyProposal(best, "unicity", ("strip", "lower"), why)
    for pattern, kind in ((_EMAIL_NAMES, "an e-mail"), (_ID_NAMES, "an id")):
        for column in columns:
            if pattern.search(column) and sample.get(column):
                return KeyProposal(column, "unicity", ("strip",), f"{column!r} names {kind}")
    first = next((c for c in columns if sample.get(c)), columns[0])
    why = f"no e-mail or id column found: {first!r} is a guess, check it"
    return KeyProposal(first, "unicity", ("strip",), why)


def _share(values: list[str], pattern: re.Pattern[str]) -> float:
    return sum(1 for v in values if pattern.match(v)) / len(values) if values else 0.0


def source_format(source: Path) -> Literal["csv", "parquet"]:
    from sync.config import infer_format

    fmt = infer_format(str(source))
    if fmt is None:
        raise UsageError(f"{source}: cannot tell the format from the name (.csv or .parquet)")
    return fmt


def csv_encoding(source: Path, chosen: str | None) -> tuple[str, bool]:
    """The encoding to read a CSV with, and whether it is a guess: the one chosen; else
    the one a byte-order mark names; else utf-8 if the bytes are, else the first fallback
    that decodes them all (latin-1 decodes any bytes)."""
    from sync.read import csv_header, csv_source
    from sync.read.sources import SourceSpec, checked_format, mapped_errors

    if chosen is not None:
        return chosen, False
    checked_format(SourceSpec(source, "csv"))  # a missing or empty file says so first
    with mapped_errors(source, "csv"):
        with csv_source.open_bytes(source) as stream:
            marked = csv_header.marked_encoding(stream.read(4))
        if marked is not None:
            return marked, False
        for codec in ("utf-8", *csv_header.FALLBACK_ENCODINGS[:-1]):
            if csv_header.decodes(_chunks(source), codec):
                return codec, codec != "utf-8"
    return csv_header.FALLBACK_ENCODINGS[-1], True


def _chunks(source: Path) -> Iterator[bytes]:
    """The file's bytes, decompressed after its name, a megabyte at a time."""
    from sync.read import csv_source

    with csv_source.open_bytes(source) as stream:
        while chunk := stream.read(1 << 20):
            yield chunk


def read_columns(
    source: Path, fmt: Literal["csv", "parquet"], encoding: str = "utf-8"
) -> tuple[list[str], str]:
    """The column names and (CSV) the delimiter the project's reader finds."""
    from sync.read import csv_source
    from sync.read.sources import SourceSpec, read_header

    names = read_header(SourceSpec(source, fmt, delimiter="auto", encoding=encoding))
    delimiter = ","
    if fmt == "csv":  # read_header has checked the file: this second look cannot fail
        delimiter = csv_source.read_header(source, "auto", encoding).delimiter
    if not names:
        raise UsageError(f"{source}: the file has no columns")
    return names, delimiter


def sample_values(
    source: Path,
    fmt: Literal["csv", "parquet"],
    delimiter: str,
    columns: Sequence[str],
    encoding: str = "utf-8",
) -> dict[str, list[str]]:
    """Up to SAMPLE_ROWS non-empty values (stripped) of the columns worth sampling."""
    from sync.read.sources import SourceSpec, read_source

    named = [c for c in columns if _EMAIL_NAMES.search(c) or _ID_NAMES.search(c)]
    candidates = list(dict.fromkeys([*named, *columns[:MAX_SAMPLED]]))
    candidates = [c for c in candidates if columns.count(c) == 1]  # a duplicate is no key
    if not candidates:
        return {}
    spec = SourceSpec(source, fmt, delimiter=delimiter, encoding=encoding)
    table = read_source(spec, candidates).table.slice(0, SAMPLE_ROWS)
    sample: dict[str, list[str]] = {}
    for column in candidates:
        values = table.column(column).to_pylist()
        sample[column] = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    return sample


def job_name(source: Path) -> str:
    """``newsletter`` for ``exports/newsletter.csv.gz``: a name the job file accepts."""
    stem = source.name.split(".", 1)[0]
    name = _NAME_CHARS.sub("-", stem).strip("-._")[:100]
    return name or "job"


def _segment_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a segment id (a number)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a segment id is a positive number")
    return value


def _relative(source: Path, folder: Path) -> str:
    """The source path as the job file will resolve it: relative to the job's folder."""
    try:
        return os.path.relpath(source.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return str(source.resolve())


def _plain(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else _y(value)


def _y(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def job_text(
    *,
    name: str,
    segment_id: int,
    source: str,
    fmt: str,
    delimiter: str,
    columns: Sequence[str],
    key: KeyProposal,
    encoding: str = "utf-8",
    guessed: bool = False,
) -> str:
    """The job file, every default written out with what it means."""
    from sync.config import SyncConfig

    d = SyncConfig()
    others = ", ".join(c for c in columns if c != key.column) or "none"
    csv_lines = (
        f"  delimiter: {_y(delimiter)}   # csv only: found in the header line\n"
        f"  encoding: {_plain(encoding)}   # csv only"
        f"{': guessed by init, the file is not utf-8' if guessed else ''}\n"
        if fmt == "csv"
        else ""
    )
    return f"""\
# Written by `np6-sync init`: check it, then `np6-sync plan` it before the first run.
name: {name}
segment_id: {segment_id}
source:
  path: {_y(source)}   # relative to this file's folder
  format: {fmt}
{csv_lines}targets:
  # Proposed: {key.why}.
  # The source's other columns: {others}.
  # unicity: NP6 finds contacts by this value (e-mail...); id: NP6 target ids.
  identify_by: {key.identify_by}
  columns: [{_y(key.column)}]
  separator: ""   # between the values of several columns
  transforms:     # strip | lower | upper | digits | nfkc
    {_y(key.column)}: [{", ".join(key.transforms)}]
# state:
#   path: state/{name}.parquet   # the default; or s3://bucket/np6/{name}.parquet
sync:
  # auto: add, and remove what left (one by one, or a reload); append: only add;
  # reload: always clear and reload (docs/removals.md)

  mode: {d.mode}
  chunk_size: {d.chunk_size}   # 1..50 targets per PUT
  max_removed_ratio: {d.max_removed_ratio}   # refuse a run that drops more of the segment
  min_rows: {d.min_rows}   # refuse a source with fewer valid rows
  max_rejected_ratio: {d.max_rejected_ratio}   # refuse a source with more rejected rows
  removals: {d.removals}   # auto | reload | per_target (id only) | defer
"""


def write_new(path: Path, text: str, *, force: bool) -> None:
    """Create ``path``; an existing file is replaced only with ``force``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise UsageError(f"{path} exists: pass --force to replace it") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot write the job file: {error.strerror}") from None
