"""`np6-sync init`: a job file from a source, that validate accepts and that syncs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import SEGMENT, settings_file, write_csv
from sync.commands.init import job_name, propose_key
from sync.config import load_job

IDS = [f"{n:03d}PKX{n:02d}" for n in range(40)]


def test_init_on_a_csv_writes_a_job_that_validates_and_syncs(cli, tmp_path: Path, emulator):
    rows = [[f" User{n}@Example.com ", str(1000 + n), f"name {n}"] for n in range(30)]
    write_csv(tmp_path / "exports" / "news.csv", rows, ("Courriel", "customer_id", "name"), ";")
    result = cli("init", "exports/news.csv", "--segment-id", SEGMENT)
    assert result.code == 0, result.err
    job_file = tmp_path / "jobs" / "news.yaml"
    assert "'Courriel' holds e-mail addresses" in result.out
    assert "valid keys  30" in result.out  # validate ran on the result
    job = load_job(job_file)
    assert job.source_path.resolve() == (tmp_path / "exports" / "news.csv").resolve()
    assert (job.targets.identify_by, job.targets.columns) == ("unicity", ["Courriel"])
    assert job.targets.transforms == {"Courriel": ["strip", "lower"]}
    assert job.source.delimiter == ";"
    assert "# " in job_file.read_text()  # the defaults come with what they mean
    assert cli("validate", job_file).code == 0
    assert cli("run", job_file, "--config", settings_file(tmp_path)).code == 0
    assert emulator.members(SEGMENT) == {f"user{n}@example.com" for n in range(30)}


def test_init_on_a_parquet_file_of_np6_ids_proposes_identify_by_id(cli, tmp_path: Path, emulator):
    table = pa.table({"n": list(range(40)), "TargetId": IDS, "score": [0.5] * 40})
    pq.write_table(table, tmp_path / "ids.parquet")
    job_file = tmp_path / "conf" / "by-id.yaml"
    result = cli("init", "ids.parquet", "--segment-id", SEGMENT, "-o", job_file)
    assert result.code == 0, result.err
    job = load_job(job_file)
    assert (job.targets.identify_by, job.targets.columns) == ("id", ["TargetId"])
    assert job.source_format == "parquet" and job.name == "ids"
    assert cli("validate", job_file).code == 0
    assert cli("run", job_file, "--config", settings_file(tmp_path)).code == 0
    assert emulator.members(SEGMENT) == set(IDS)


def test_init_on_a_parquet_file_of_emails_and_numbers(cli, tmp_path: Path, emulator):
    table = pa.table(
        {
            "customer": pa.array(range(12345678, 12345688), pa.int64()),
            "mail": [f"p{n}@example.org" for n in range(10)],
        }
    )
    pq.write_table(table, tmp_path / "people.parquet")
    assert cli("init", "people.parquet", "--segment-id", SEGMENT).code == 0
    job = load_job(tmp_path / "jobs" / "people.yaml")
    assert (job.targets.identify_by, job.targets.columns) == ("unicity", ["mail"])
    assert (
        cli("run", tmp_path / "jobs" / "people.yaml", "--config", settings_file(tmp_path)).code == 0
    )
    assert emulator.members(SEGMENT) == {f"p{n}@example.org" for n in range(10)}


def test_init_never_overwrites_without_force(cli, tmp_path: Path):
    write_csv(tmp_path / "list.csv", [["a@example.com"]])
    job_file = tmp_path / "jobs" / "list.yaml"
    job_file.parent.mkdir()
    job_file.write_text("mine\n")
    result = cli("init", "list.csv", "--segment-id", "7")
    assert result.code == 2
    assert "exists: pass --force" in result.err
    assert job_file.read_text() == "mine\n"
    assert cli("init", "list.csv", "--segment-id", "7", "--force").code == 0
    assert yaml.safe_load(job_file.read_text())["segment_id"] == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["missing.csv", "--segment-id", "1"], "file not found", id="no-file"),
        pytest.param(["list.json", "--segment-id", "1"], "cannot tell the format", id="format"),
        pytest.param(["s3://b/list.csv", "--segment-id", "1"], "reads a local file", id="url"),
    ],
)
def test_init_reports_what_it_cannot_read(cli, tmp_path: Path, argv, message) -> None:
    (tmp_path / "list.json").write_text("{}")
    result = cli("init", *argv)
    assert result.code == 2
    assert message in result.err
    assert not (tmp_path / "jobs").exists()


def test_a_segment_id_is_a_positive_number(cli, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli("init", "list.csv", "--segment-id", "0")
    assert exit_.value.code == 2


@pytest.mark.parametrize(
    ("columns", "sample", "expected"),
    [
        pytest.param(
            ["id", "email"],
            {"id": ["000PKXK4", "0A0PKXK5"], "email": ["a@b.fr"]},
            ("id", "id"),
            id="np6-ids-first",
        ),
        pytest.param(
            ["num", "email"],
            {"num": ["12345678", "23456789"], "email": ["a@b.fr"]},
            ("email", "unicity"),
            id="digits-are-no-np6-id",
        ),
        pytest.param(
            ["contact", "x"],
            {"contact": ["a@b.fr", "c@d.com"], "x": ["1"]},
            ("contact", "unicity"),
            id="email-by-value",
        ),
        pytest.param(
            ["name", "customer_id"],
            {"name": ["Ann"], "customer_id": ["1", "2"]},
            ("customer_id", "unicity"),
            id="id-by-name",
        ),
        pytest.param(
            ["first", "second"], {"first": [], "second": ["x"]}, ("second", "unicity"), id="guess"
        ),
    ],
)
def test_the_key_proposal(columns, sample, expected) -> None:
    key = propose_key(columns, sample)
    assert (key.column, key.identify_by) == expected


@pytest.mark.parametrize(
    ("path", "name"),
    [
        pytest.param("exports/newsletter.csv.gz", "newsletter", id="compressed"),
        pytest.param("Liste clients (FR).csv", "Liste-clients-FR", id="spaces"),
        pytest.param("___.csv", "job", id="nothing-left"),
    ],
)
def test_the_job_name_comes_from_the_file_name(path, name) -> None:
    assert job_name(Path(path)) == name


# --- the encoding of a CSV that is not UTF-8 ----------------------------------------------

ACCENTED = ["josé@exemple.fr", "anne@exemple.fr", "renée@exemple.fr"]


def _windows_csv(path: Path, header: str = "Courriel;Nom") -> Path:
    """What Excel on Windows saves as "CSV (separator: semicolon)" in Western Europe."""
    rows = [header, *(f"{e};{e.split('@')[0].title()} Müller" for e in ACCENTED)]
    path.write_bytes("\r\n".join(rows).encode("cp1252") + b"\r\n")
    return path


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Courriel;Nom", id="accents-in-values"),
        pytest.param("Courriél;Nom", id="accents-in-the-header"),
    ],
)
def test_init_notices_a_file_that_is_not_utf8_and_proposes_its_encoding(
    cli, tmp_path: Path, emulator, header: str
) -> None:
    _windows_csv(tmp_path / "clients.csv", header)
    result = cli("init", "clients.csv", "--segment", SEGMENT)
    assert result.code == 0, result.err
    assert "clients.csv: not UTF-8: read as cp1252" in result.out
    assert "pass --encoding to choose another" in result.out
    job_file = tmp_path / "jobs" / "clients.yaml"
    text = job_file.read_text()
    assert "encoding: cp1252   # csv only: guessed by init" in text
    job = load_job(job_file)
    assert (job.source.encoding, job.targets.columns) == ("cp1252", [header.split(";")[0]])
    assert cli("run", job_file, "--config", settings_file(tmp_path)).code == 0
    assert emulator.members(SEGMENT) == set(ACCENTED)


@pytest.mark.parametrize(
    ("encoding", "written"),
    [
        pytest.param("latin-1", "latin-1", id="latin-1"),
        pytest.param("cp1252", "cp1252", id="cp1252"),
    ],
)
def test_init_encoding_is_written_into_the_job(
    cli, tmp_path: Path, emulator, encoding: str, written: str
) -> None:
    _windows_csv(tmp_path / "clients.csv")
    result = cli("init", "clients.csv", "--segment", SEGMENT, "--encoding", encoding)
    assert result.code == 0, result.err
    assert "not UTF-8" not in result.out  # chosen, not guessed
    job = load_job(tmp_path / "jobs" / "clients.yaml")
    assert job.source.encoding == written
    assert (
        cli("run", tmp_path / "jobs" / "clients.yaml", "--config", settings_file(tmp_path)).code
        == 0
    )
    assert emulator.members(SEGMENT) == set(ACCENTED)


def test_init_of_a_utf8_file_writes_utf8(cli, tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "Courriel\r\njosé@exemple.fr\r\n".encode())
    result = cli("init", "clients.csv", "--segment", SEGMENT)
    assert result.code == 0, result.err
    assert "not UTF-8" not in result.out
    assert load_job(tmp_path / "jobs" / "clients.yaml").source.encoding == "utf-8"


@pytest.mark.parametrize(
    ("source", "encoding", "message"),
    [
        pytest.param("clients.csv", "klingon", "unknown encoding 'klingon'", id="unknown"),
        pytest.param("ids.parquet", "cp1252", "--encoding is for CSV sources", id="parquet"),
    ],
)
def test_init_refuses_an_encoding_it_cannot_use(
    cli, tmp_path: Path, source: str, encoding: str, message: str
) -> None:
    _windows_csv(tmp_path / "clients.csv")
    pq.write_table(pa.table({"TargetId": IDS}), tmp_path / "ids.parquet")
    result = cli("init", source, "--segment", SEGMENT, "--encoding", encoding)
    assert result.code == 2
    assert message in result.err
    assert not (tmp_path / "jobs").exists()
