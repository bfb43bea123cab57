"""The route table (sync/job/route.py): each precondition on its own, then the routes as
the command line and the API report them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import CLOCK_IN_SQL, SEGMENT, make_job, run_process, write_csv
from sync.config import load_job
from sync.emulator import Emulator
from sync.job import route
from sync.job.route import Facts, decide, facts_of

PLAIN = Facts(
    given="file",
    size=1 << 20,
    segments=1,
    fan_out=False,
    state_remote=False,
    where_clock=False,
    full_refresh=False,
    dry_run=False,
)
LARGE = replace(PLAIN, size=route.FOLD_BYTES)


def test_a_plain_local_file_is_read_whole_sealed_and_printed() -> None:
    plain = decide(PLAIN)
    assert (plain.read, plain.seal, plain.print, plain.download) == ("whole", True, True, False)
    assert plain.reason == "a local file of 1 MiB"


def test_a_file_is_folded_from_the_fold_size_on_and_read_whole_just_under() -> None:
    assert decide(LARGE).read == "folded" and decide(LARGE).seal
    assert "64 MiB" in decide(LARGE).reason
    assert decide(replace(LARGE, size=route.FOLD_BYTES - 1)).read == "whole"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param({"where_clock": True}, "reads the date or time", id="where-on-the-date"),
        pytest.param({"state_remote": True}, "object storage", id="state-on-s3"),
        pytest.param({"full_refresh": True}, "full refresh", id="full-refresh"),
        pytest.param({"dry_run": True}, "a plan records nothing", id="dry-run"),
        pytest.param({"fan_out": True, "segments": 3}, "shared", id="fan-out"),
        pytest.param({"given": "frame"}, "DataFrame", id="dataframe"),
    ],
)
def test_each_precondition_of_the_seal(change: dict[str, object], why: str) -> None:
    chosen = decide(replace(PLAIN, **change))  # type: ignore[arg-type]
    assert not chosen.seal and why in chosen.reason


@pytest.mark.parametrize(
    ("change", "read"),
    [
        pytest.param({"state_remote": True}, "whole", id="state-on-s3"),
        pytest.param({"full_refresh": True}, "whole", id="full-refresh"),
        pytest.param({"fan_out": True, "segments": 2}, "shared", id="fan-out"),
        pytest.param({"given": "frame"}, "shared", id="dataframe"),
        pytest.param({"given": "url", "size": -1}, "whole", id="remote-source"),
    ],
)
def test_each_precondition_of_the_fold(change: dict[str, object], read: str) -> None:
    assert decide(replace(LARGE, **change)).read == read  # type: ignore[arg-type]


def test_a_where_on_the_date_still_folds_and_prints_but_never_seals() -> None:
    clock = decide(replace(LARGE, where_clock=True))
    assert clock.read == "folded" and not clock.seal
    assert decide(replace(PLAIN, where_clock=True)).print  # the print is of what was read


@pytest.mark.parametrize(
    ("change", "printed"),
    [
        pytest.param({}, True, id="plain"),
        pytest.param({"dry_run": True}, True, id="dry-run"),
        pytest.param({"state_remote": True}, False, id="state-on-s3"),
        pytest.param({"full_refresh": True}, False, id="full-refresh"),
        pytest.param({"fan_out": True, "segments": 2}, False, id="fan-out"),
        pytest.param({"given": "frame"}, False, id="dataframe"),
    ],
)
def test_each_precondition_of_the_print(change: dict[str, object], printed: bool) -> None:
    assert decide(replace(PLAIN, **change)).print is printed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "download"),
    [
        pytest.param({}, True, id="url-local-state"),
        pytest.param({"state_remote": True}, False, id="url-state-on-s3"),
        pytest.param({"fan_out": True, "segments": 2}, False, id="url-fan-out"),
    ],
)
def test_a_url_source_is_downloaded_when_it_may_be_sealed(
    change: dict[str, object], download: bool
) -> None:
    url = replace(PLAIN, given="url", size=-1, **change)  # type: ignore[arg-type]
    assert decide(url).download is download


def test_facts_are_read_from_the_job(tmp_path: Path) -> None:
    write_csv(tmp_path / "list.csv", [["a@x.com"]])
    clock = "DATE(d) <= CURRENT_DATE" if CLOCK_IN_SQL else "d = 'x'"  # polars 1.x: no clock
    job = load_job(make_job(tmp_path, source={"where": clock}))
    facts = facts_of(job)
    assert facts.given == "file" and facts.size == (tmp_path / "list.csv").stat().st_size
    assert facts.where_clock is CLOCK_IN_SQL and not facts.state_remote and not facts.fan_out

    assert facts_of(job, frame=True).given == "frame"
    other = load_job(make_job(tmp_path, source={"where": "d = 'x'"}))
    assert not facts_of(other).where_clock


@pytest.mark.parametrize(
    "where",
    ["DATE(d) <= CURRENT_DATE", "d < CAST(CURRENT_TIMESTAMP AS VARCHAR)", "NOW() > DATE(d)"],
)
def test_conditions_that_read_the_clock_are_seen(where: str) -> None:
    from sync.read.where import traits

    assert traits(where).clock


def _report(out: Path) -> dict[str, object]:
    job: dict[str, object] = json.loads(out.read_text())["jobs"][0]
    return job


def test_the_report_and_verbose_log_say_the_route_and_why(
    tmp_path: Path, emulator: Emulator, env: dict[str, str], config: Path
) -> None:
    write_csv(tmp_path / "list.csv", [[f"u{n}@x.com"] for n in range(20)])
    job = make_job(tmp_path)
    out = tmp_path / "r.json"
    first = run_process(["run", job, "--config", config, "--report-json", out, "-v"], env)
    assert first.returncode == 0
    assert _report(out)["route"] == "whole"
    assert "route: whole (a local file of" in first.stderr
    again = run_process(["run", job, "--config", config, "--report-json", out], env)
    assert again.returncode == 0
    assert _report(out)["route"] == "sealed"
    assert "same bytes (sha256), same job" in str(_report(out)["route_reason"])
    assert emulator.members(SEGMENT) == {f"u{n}@x.com" for n in range(20)}


@pytest.mark.parametrize(
    ("change", "route"),
    [
        pytest.param({}, ("whole", True, False, True, "a local file of 1 MiB"), id="plain"),
        pytest.param(
            {"size": route.FOLD_BYTES},
            (
                "folded",
                True,
                False,
                False,
                "a local file of 64 MiB (from 64 MiB on, files are read a batch at a time "
                "against the state's digests)",
            ),
            id="large",
        ),
        pytest.param(
            {"size": route.FOLD_BYTES, "where_clock": True},
            (
                "folded",
                False,
                False,
                False,
                "a local file of 64 MiB (from 64 MiB on, files are read a batch at a time "
                "against the state's digests); never sealed: source.where reads the date or "
                "time: the same bytes may choose other rows",
            ),
            id="large-clock",
        ),
        pytest.param(
            {"size": route.FOLD_BYTES, "state_remote": True},
            (
                "whole",
                False,
                False,
                False,
                "a local file of 64 MiB, read whole (a state in object storage, or a full "
                "refresh); never sealed: the state is in object storage",
            ),
            id="large-state-on-s3",
        ),
        pytest.param(
            {"given": "url", "size": -1},
            ("whole", True, True, True, "a URL source, downloaded first"),
            id="url",
        ),
        pytest.param(
            {"given": "url", "size": -1, "state_remote": True},
            (
                "whole",
                False,
                False,
                False,
                "a URL source, read where it lies; never sealed: the state is in object storage",
            ),
            id="url-state-on-s3",
        ),
        pytest.param(
            {"size": -1},
            ("whole", True, False, True, "the job's file"),
            id="file-not-there",
        ),
        pytest.param(
            {"size": 2048},
            ("whole", True, False, True, "a local file of 2 KiB"),
            id="kibibytes",
        ),
        pytest.param(
            {"size": 100},
            ("whole", True, False, True, "a local file of 100 bytes"),
            id="bytes",
        ),
        pytest.param(
            {"given": "frame", "size": -1},
            (
                "shared",
                False,
                False,
                False,
                "a DataFrame handed in; never sealed: a DataFrame has no bytes to prove",
            ),
            id="dataframe",
        ),
        pytest.param(
            {"fan_out": True, "segments": 3},
            (
                "shared",
                False,
                False,
                False,
                "one read of the file for the fan-out's 3 segments; never sealed: its "
                "source is shared",
            ),
            id="fan-out",
        ),
    ],
)
def test_each_route_says_what_it_is_and_why_in_words(
    change: dict[str, object], route: tuple[str, bool, bool, bool, str]
) -> None:
    chosen = decide(replace(PLAIN, **change))  # type: ignore[arg-type]
    assert (chosen.read, chosen.seal, chosen.download, chosen.print, chosen.reason) == route
    assert chosen.name == chosen.read


@pytest.mark.parametrize(
    ("size", "said"),
    [
        pytest.param(0, "a local file of 0 bytes", id="empty"),
        pytest.param(1023, "a local file of 1,023 bytes", id="under-a-kibibyte"),
        pytest.param(1024, "a local file of 1 KiB", id="a-kibibyte"),
        pytest.param((1 << 20) - 1, "a local file of 1,024 KiB", id="under-a-mebibyte"),
    ],
)
def test_sizes_are_said_at_their_boundaries(size: int, said: str) -> None:
    assert decide(replace(PLAIN, size=size)).reason == said


@pytest.mark.parametrize(
    ("change", "why"),
    [
        pytest.param({"full_refresh": True}, "a full refresh rebuilds everything", id="refresh"),
        pytest.param({"dry_run": True}, "a plan records nothing", id="dry-run"),
    ],
)
def test_why_a_run_is_not_sealed_in_words(change: dict[str, object], why: str) -> None:
    chosen = decide(replace(PLAIN, **change))  # type: ignore[arg-type]
    assert chosen.reason == f"a local file of 1 MiB; never sealed: {why}"


def test_the_facts_of_a_job_as_the_doors_give_them(tmp_path: Path) -> None:
    write_csv(tmp_path / "list.csv", [["a@x.com"]])
    job = load_job(make_job(tmp_path))
    size = (tmp_path / "list.csv").stat().st_size
    assert facts_of(job) == Facts("file", size, 1, False, False, False, False, False)
    assert facts_of(job, segments=3, fan_out=True, full_refresh=True, dry_run=True) == Facts(
        "file", size, 3, True, False, False, True, True
    )
    (tmp_path / "list.csv").unlink()  # not there: its reader will say so
    assert facts_of(job).size == -1
    remote = load_job(
        make_job(
            tmp_path,
            source={"path": "https://example.invalid/list.csv"},
            state={"path": "s3://bucket/list.parquet"},
        )
    )
    assert facts_of(remote) == Facts("url", -1, 1, False, True, False, False, False)
