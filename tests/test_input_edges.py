"""Input edges found in third-party test corpora (issue 24, holes 12 and 13), end to end.

Each file is run through the real command line against the emulator, read whole and
folded (``FOLD_BYTES`` 0 folds every file, a few rows a batch): a file the reader cannot
take exits 2 naming the problem (never a value: the values are personal data), and
nothing is sent.
"""

from __future__ import annotations

import io
import json
import lzma
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEGMENT, make_job
from corpus import compress
from sync.emulator import Emulator
from sync.job import route
from sync.read import batches

GOOD = [f"user{n}@example.com" for n in range(500)]
# A value broken mid-way: 0xc3 opens a two-byte UTF-8 sequence that 'h' does not continue.
BROKEN = b"TREL\xc3hello"
FOLDS = [pytest.param(False, id="whole"), pytest.param(True, id="folded")]


@pytest.fixture
def fold(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    def choose(folded: bool) -> None:
        monkeypatch.setattr(route, "FOLD_BYTES", 0 if folded else 1 << 40)
        monkeypatch.setattr(batches, "BATCH_ROWS", 64)

    return choose


def _run(cli: Callable[..., Any], job: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    report = job.with_name("report.json")
    report.unlink(missing_ok=True)
    result = cli(*args, job, "--report-json", report)
    return result, json.loads(report.read_text())["jobs"][0]


# --- P#12: a Parquet string column that is not UTF-8 -------------------------------------


def _string_column(values: list[bytes], dictionary: bool) -> pa.Array:
    """Text as the schema says, with bytes pyarrow does not check on write or on read."""
    array = pa.array(values, pa.binary()).view(pa.string())
    return array.dictionary_encode() if dictionary else array


@pytest.mark.parametrize("folded", FOLDS)
@pytest.mark.parametrize(
    "dictionary", [pytest.param(False, id="string"), pytest.param(True, id="dictionary")]
)
def test_a_parquet_text_column_that_is_not_utf8_is_refused_before_sending(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    fold: Callable[[bool], None],
    folded: bool,
    dictionary: bool,
) -> None:
    fold(folded)
    values = [v.encode() for v in GOOD]
    values.insert(250, BROKEN)  # spreadsheet row 251: Parquet has no header row
    source = tmp_path / "list.parquet"
    pq.write_table(pa.table({"email": _string_column(values, dictionary)}), source)
    job = make_job(tmp_path, source={"path": "list.parquet"})

    for command in ("plan", "run", "run"):  # a later run fails the same way, sending nothing
        result, report = _run(cli, job, command)
        output = result.out + result.err
        assert result.code == 2, output
        assert f"{source}: column 'email', row 251: " in output
        assert "not valid utf-8" in output
        assert "TREL" not in output and "hello" not in output and "this is a bug" not in output
        assert report["status"] == "failed" and report["targets_sent"] == 0
        assert emulator.calls == []
    assert emulator.members(SEGMENT) == set()


def test_a_report_counts_what_was_sent_when_a_step_cannot_be_made(
    tmp_path: Path, emulator: Emulator, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run of P#12 sent 500 targets and reported 0: whatever stops the sending (here a
    step that fails to be made after five were, as the undecodable value did), the
    report counts what NP6 acknowledged, and the next run sends the rest."""
    from sync.send import push

    made = push._chunks

    def five_then_a_bug(keys: pa.Array, size: int) -> Iterator[list[str]]:
        for number, chunk in enumerate(made(keys, size)):
            if number == 5:
                raise RuntimeError("a step that cannot be made")
            yield chunk

    (tmp_path / "list.csv").write_text("email\n" + "\n".join(GOOD) + "\n")
    job = make_job(tmp_path, sync={"chunk_size": 50})
    with monkeypatch.context() as patched:
        patched.setattr(push, "_chunks", five_then_a_bug)
        result, report = _run(cli, job, "run")
    assert result.code == 1, result.out + result.err
    assert report["status"] == "failed" and "a step that cannot be made" in report["error"]
    assert report["targets_sent"] == len(emulator.members(SEGMENT)) == 250

    result, report = _run(cli, job, "run")
    assert result.code == 0, result.out + result.err
    assert report["targets_sent"] == 250 and emulator.members(SEGMENT) == set(GOOD)


# --- P#13: a header and nothing else; a compressed or binary file named .csv ---------------


@pytest.mark.parametrize("folded", FOLDS)
@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("list.csv", b"email", id="no-newline"),
        pytest.param("list.csv", b"\xef\xbb\xbfemail,name", id="bom-two-columns"),
        pytest.param("list.csv", b'"email"', id="quoted"),
        pytest.param("list.csv.gz", b"email", id="gzip"),
    ],
)
def test_a_header_only_file_has_no_rows_with_or_without_its_last_newline(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    fold: Callable[[bool], None],
    folded: bool,
    name: str,
    text: bytes,
) -> None:
    fold(folded)
    job = make_job(tmp_path, source={"path": name})
    source = tmp_path / name
    source.write_bytes(compress("email\n{}\n".format("\n".join(GOOD[:20])).encode(), source.suffix))
    first, _ = _run(cli, job, "run")
    assert first.code == 0, first.out + first.err
    emulator.reset_calls()

    source.write_bytes(compress(text, source.suffix))
    result, report = _run(cli, job, "run")
    output = result.out + result.err
    assert result.code == 3, output
    assert "refused: the source has no rows" in output
    assert (report["status"], report["rows_read"], report["targets_sent"]) == ("refused", 0, 0)
    assert emulator.calls == [] and emulator.members(SEGMENT) == set(GOOD[:20])


def _zip(data: bytes) -> bytes:
    return compress(data, ".zip", member="export.csv")


def _stored_zip(data: bytes) -> bytes:
    """Uncompressed: the CSV's own line ends cut the archive's header into "lines"."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("export.csv", data)
    return buffer.getvalue()


def _parquet(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"email": data.decode().split()[1:]}), sink)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize("folded", FOLDS)
@pytest.mark.parametrize(
    ("name", "pack", "phrase"),
    [
        pytest.param("list.csv", _zip, "the file is a zip archive: name it list.csv.zip", id="zip"),
        pytest.param(
            "list.csv",
            _stored_zip,
            "the file is a zip archive: name it list.csv.zip",
            id="zip-stored",
        ),
        pytest.param(
            "list.csv",
            lambda d: compress(d, ".gz"),
            "the file is gzip-compressed: name it list.csv.gz",
            id="gzip",
        ),
        pytest.param(
            "list.txt",
            lambda d: compress(d, ".bz2"),
            "the file is bzip2-compressed: name it list.txt.bz2",
            id="bzip2",
        ),
        pytest.param(
            "list.tsv",
            lambda d: compress(d, ".zst"),
            "the file is zstd-compressed: name it list.tsv.zst",
            id="zstd",
        ),
        pytest.param(
            "list.csv",
            lzma.compress,
            "the file is xz-compressed, which np6-sync does not read: decompress it",
            id="xz",
        ),
        pytest.param(
            "list.csv",
            _parquet,
            "the file is a Parquet file: name it list.parquet or set source.format: parquet",
            id="parquet",
        ),
        pytest.param(
            "list.csv.gz",
            lambda d: compress(_zip(d), ".gz"),
            "the file, once gzip-decompressed, is a zip archive",
            id="zip-in-gzip",
        ),
    ],
)
def test_a_compressed_or_binary_file_under_a_text_name_is_named_for_what_it_is(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    fold: Callable[[bool], None],
    folded: bool,
    name: str,
    pack: Callable[[bytes], bytes],
    phrase: str,
) -> None:
    fold(folded)
    job = make_job(tmp_path, source={"path": name})
    source = tmp_path / name
    source.write_bytes(pack("email\n{}\n".format("\n".join(GOOD)).encode()))
    for command in ("validate", "plan", "run"):
        result = cli(command, job)
        output = result.out + result.err
        assert result.code == 2, output
        assert f"{source}: {phrase}" in output
        assert "not found" not in output and "PK" not in output
    assert emulator.calls == []


# --- a mistyped column: the header's closest names, whatever targets.transforms says ------


def _columns_job(tmp_path: Path, columns: list[str], transforms: dict[str, list[str]]) -> Path:
    source = tmp_path / "list.csv"
    source.write_text("e_mail,email,name\n" + "".join(f"x,{e},n\n" for e in GOOD[:20]))
    targets = {"columns": columns, "transforms": transforms}
    return make_job(tmp_path, targets=targets)


@pytest.mark.parametrize("folded", FOLDS)
@pytest.mark.parametrize(
    "transforms",
    [
        pytest.param({"email": ["strip", "lower"]}, id="transforms-spelled-right"),
        pytest.param({"emial": ["strip", "lower"]}, id="transforms-spelled-alike"),
        pytest.param({}, id="no-transforms"),
    ],
)
def test_a_mistyped_column_is_shown_the_headers_closest_names(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    fold: Callable[[bool], None],
    folded: bool,
    transforms: dict[str, list[str]],
) -> None:
    fold(folded)
    job = _columns_job(tmp_path, ["emial"], transforms)
    for command in ("validate", "plan", "run"):
        result = cli(command, job)
        output = result.out + result.err
        assert result.code == 2, output
        assert "column 'emial' not found; the closest are 'email', 'e_mail'" in output
        assert "transforms" not in output
    assert emulator.calls == []


@pytest.mark.parametrize("folded", FOLDS)
def test_a_transform_of_a_column_that_is_not_a_key_column_is_refused(
    tmp_path: Path,
    emulator: Emulator,
    cli: Callable[..., Any],
    fold: Callable[[bool], None],
    folded: bool,
) -> None:
    """Left alone, the misspelt transform would be skipped: keys not lowered."""
    fold(folded)
    job = _columns_job(tmp_path, ["email"], {"emial": ["lower"]})
    for command in ("validate", "plan", "run"):
        result = cli(command, job)
        output = result.out + result.err
        assert result.code == 2, output
        assert "targets.transforms names 'emial', which is not in targets.columns" in output
    assert emulator.calls == []
