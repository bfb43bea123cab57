from __future__ import annotations

import io
import logging
import os
import select

import pytest

from sync.console.progress import (
    LogProgress,
    NullProgress,
    TerminalProgress,
    format_duration,
    make_progress,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_terminal_progress_draws_bar_counts_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    bar = TerminalProgress(out, clock=clock, width=20)
    bar.start("push", 1000)
    clock.now = 1.0
    bar.advance(250)

    last = out.getvalue().split("\r")[-1]
    assert last == "push [#####...............] 250/1,000  25%  250/s  0:03 left"


def test_terminal_progress_redraws_at_most_every_tenth_of_a_second() -> None:
    out, clock = io.StringIO(), Clock()
    bar = TerminalProgress(out, clock=clock)
    bar.start("push", 1000)  # draw 1
    for step in range(1, 11):
        clock.now = 0.5 + step * 0.01  # ten chunks within 0.1 s: draw 2 only
        bar.advance(10)
    clock.now = 0.7
    bar.advance(10)  # draw 3

    assert out.getvalue().count("\r") == 3
    assert "110/1,000" in out.getvalue().split("\r")[-1]


def test_terminal_progress_finish_shows_the_total_and_ends_the_line() -> None:
    out, clock = io.StringIO(), Clock()
    bar = TerminalProgress(out, clock=clock, width=10)
    bar.start("push", 100)
    clock.now = 0.01
    bar.advance(100)  # throttled: the last draw only happens at finish
    clock.now = 2.0
    bar.finish()
    bar.finish()  # a second finish writes nothing more

    text = out.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert text.split("\r")[-1] == "push [##########] 100/100 100%  50/s  0:02 elapsed\n"


def test_terminal_progress_blanks_what_a_longer_line_left() -> None:
    out, clock = io.StringIO(), Clock()
    bar = TerminalProgress(out, clock=clock, width=4)
    bar.start("push", 10)  # "--/s  --:-- left" is longer than the lines that follow
    clock.now = 1.0
    bar.advance(5)

    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first)
    assert second.rstrip(" ") == "push [##..] 5/10  50%  5/s  0:01 left"


def test_progress_ignores_calls_outside_start_and_finish() -> None:
    out = io.StringIO()
    bar = TerminalProgress(out, clock=Clock())
    bar.advance(5)
    bar.finish()
    assert out.getvalue() == ""


def test_log_progress_emits_throttled_records_and_one_at_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="np6sync.progress")
    clock = Clock()
    progress = LogProgress(clock=clock)  # every 10 s
    progress.start("push", 10_000)
    for now in (1, 5, 9.9, 10, 15, 19.9, 20.5, 25):
        clock.now = now
        progress.advance(100)
    clock.now = 30.0
    progress.advance(9_200)  # 9.5 s after the last record: quiet
    clock.now = 40.0
    progress.finish()

    records = [r for r in caplog.records if r.name == "np6sync.progress"]
    assert [r.__dict__["done"] for r in records] == [400, 700, 10_000]
    first, second, final = records
    assert first.__dict__["phase"] == "push"
    assert first.__dict__["total"] == 10_000
    assert first.__dict__["rate"] == 40.0
    assert first.__dict__["seconds_left"] == 240.0
    assert first.getMessage() == "push: 400/10,000 (4%), 40/s, 4:00 left"
    assert second.__dict__["rate"] == pytest.approx(34.1, abs=0.1)
    assert final.__dict__["final"] is True
    assert final.__dict__["rate"] == 250.0
    assert final.getMessage() == "push: 10,000/10,000 done in 40.0s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(None, "--:--", id="unknown"),
        pytest.param(0.2, "0:01", id="rounds-up"),
        pytest.param(75, "1:15", id="minutes"),
        pytest.param(3 * 3600 + 62, "3:01:02", id="hours"),
        pytest.param(float("inf"), "--:--", id="infinite"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def read_terminal(leader: int) -> bytes:
    """All a pseudo-terminal received: one read may return only the first line."""
    out = b""
    while select.select([leader], [], [], 5)[0]:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        out += chunk
    return out


def test_make_progress_draws_a_bar_on_a_terminal() -> None:
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", encoding="utf-8") as tty:
            progress = make_progress(tty, "auto")
            assert isinstance(progress, TerminalProgress)
            assert isinstance(make_progress(tty, "text"), TerminalProgress)
            # JSON logs on a terminal: a bar would break the one-object-per-line promise.
            assert isinstance(make_progress(tty, "json"), LogProgress)
            assert isinstance(make_progress(tty, "auto", quiet=True), NullProgress)
            progress.start("push", 10)
            progress.advance(10)
            progress.finish()
        assert b"10/10" in read_terminal(leader)
    finally:
        os.close(leader)


def test_make_progress_logs_into_a_pipe() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as _, os.fdopen(write_end, "w") as pipe:
        assert isinstance(make_progress(pipe, "auto"), LogProgress)
        assert isinstance(make_progress(pipe, "text"), LogProgress)
        assert isinstance(make_progress(pipe, "json"), LogProgress)


def test_reading_rows_of_unknown_total_shows_the_count_and_rate() -> None:
    out, clock = io.StringIO(), Clock()
    bar = TerminalProgress(out, clock=clock)
    bar.start("read", 0)  # a CSV file's rows are not known before the end
    clock.now = 2.0
    bar.advance(3_000_000)
    assert out.getvalue().split("\r")[-1] == "read 3,000,000 rows  1,500,000/s  0:02 elapsed"
    clock.now = 4.0
    bar.advance(1_000_000)
    bar.finish()
    assert out.getvalue().split("\r")[-1] == "read 4,000,000 rows  1,000,000/s  0:04 elapsed\n"


def test_reading_logs_rows_and_rate_at_most_every_ten_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="np6sync.progress")
    clock = Clock()
    progress = LogProgress(clock=clock)
    progress.start("read", 0)
    for now in (4, 9.9, 10, 19.9, 20):
        clock.now = now
        progress.advance(1_000_000)
    clock.now = 21.0
    progress.finish()

    records = [r for r in caplog.records if r.name == "np6sync.progress"]
    assert [r.__dict__["done"] for r in records] == [3_000_000, 5_000_000, 5_000_000]
    first = records[0]
    assert (first.__dict__["phase"], first.__dict__["total"]) == ("read", 0)
    assert first.__dict__["seconds_left"] is None  # unknown, never 0
    assert first.getMessage() == "read: 3,000,000 rows, 300,000/s, 0:10 elapsed"
    assert records[-1].__dict__["final"] is True
