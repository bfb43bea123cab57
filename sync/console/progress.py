"""Progress: a small interface; a bar on a terminal, throttled log records elsewhere."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from sync.console.logs import LogFormat, is_terminal, resolve_format

Clock = Callable[[], float]


class Progress(Protocol):
    # A total of 0 is unknown (rows read from a CSV file): the count and rate are shown.
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, amount: int) -> None: ...
    def finish(self) -> None: ...


class NullProgress:
    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


class _Meter:
    """What both renderings show: done / total, rate and time left, from an injectable clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.phase = ""
        self.total = self.done = 0
        self.started = 0.0
        self.running = False

    def begin(self, phase: str, total: int) -> None:
        self.phase, self.total, self.done = phase, max(total, 0), 0
        self.started = self.clock()
        self.running = True

    def elapsed(self, now: float) -> float:
        return max(now - self.started, 0.0)

    def rate(self, now: float) -> float | None:
        elapsed = self.elapsed(now)
        return self.done / elapsed if self.done and elapsed > 0 else None

    def seconds_left(self, now: float) -> float | None:
        rate = self.rate(now)
        return max(self.total - self.done, 0) / rate if rate else None

    def share(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 1.0


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def _speed(rate: float | None) -> str:
    return f"{rate:,.0f}/s" if rate is not None else "--/s"


def _elapsed(meter: _Meter, now: float) -> str:
    return f"{format_duration(meter.elapsed(now))} elapsed"


class TerminalProgress:
    """One self-rewriting line: ``push [#####.....] 1,200/5,000  48%  350/s  0:11 left``."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        every: float = 0.1,
        width: int = 24,
        clock: Clock = time.monotonic,
    ) -> None:
        self.stream = stream
        self.every = every
        self.width = width
        self.meter = _Meter(clock)
        self.shown = -math.inf
        self.drawn = 0  # length of the line on screen, to blank what a shorter line leaves

    def start(self, phase: str, total: int) -> None:
        self.meter.begin(phase, total)
        self.shown = -math.inf
        self.drawn = 0
        self._draw(self.meter.clock())

    def advance(self, amount: int) -> None:
        if not self.meter.running:
            return
        self.meter.done += amount
        now = self.meter.clock()
        # Redrawing on every chunk would cost more than the chunks on a fast link.
        if now - self.shown >= self.every:
            self._draw(now)

    def finish(self) -> None:
        if not self.meter.running:
            return
        self.meter.running = False
        self._draw(self.meter.clock())
        self.stream.write("\n")
        self.stream.flush()

    def render(self, now: float) -> str:
        m = self.meter
        if not m.total:
            return f"{m.phase} {m.done:,} rows  {_speed(m.rate(now))}  {_elapsed(m, now)}"
        filled = round(m.share() * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        if not m.running or m.done >= m.total:
            when = _elapsed(m, now)
        else:
            when = f"{format_duration(m.seconds_left(now))} left"
        share = f"{m.done:,}/{m.total:,} {m.share():4.0%}"
        return f"{m.phase} [{bar}] {share}  {_speed(m.rate(now))}  {when}"

    def _draw(self, now: float) -> None:
        self.shown = now
        line = self.render(now)
        # Spaces rather than an erase escape: they work on any terminal, and in a file.
        self.stream.write("\r" + line + " " * max(self.drawn - len(line), 0))
        self.stream.flush()
        self.drawn = len(line)


class LogProgress:
    """A structured log record at most every ``every`` seconds, and one at the end.

    For runs without a terminal (CI, containers, cron), where a rewriting line would be
    thousands of lines of noise in the collected log.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        every: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.log = logger or logging.getLogger("np6sync.progress")
        self.every = every
        self.meter = _Meter(clock)
        self.logged = 0.0

    def start(self, phase: str, total: int) -> None:
        self.meter.begin(phase, total)
        self.logged = self.meter.started

    def advance(self, amount: int) -> None:
        if not self.meter.running:
            return
        self.meter.done += amount
        now = self.meter.clock()
        if now - self.logged >= self.every:
            self.logged = now
            self._emit(now, final=False)

    def finish(self) -> None:
        if not self.meter.running:
            return
        self._emit(self.meter.clock(), final=True)
        self.meter.running = False

    def _emit(self, now: float, *, final: bool) -> None:
        m = self.meter
        rate = m.rate(now)
        left = None if final or not m.total else m.seconds_left(now)
        if not m.total:
            message = f"{m.phase}: {m.done:,} rows, {_speed(rate)}, {_elapsed(m, now)}"
        elif final:
            message = f"{m.phase}: {m.done:,}/{m.total:,} done in {m.elapsed(now):.1f}s"
        else:
            message = (
                f"{m.phase}: {m.done:,}/{m.total:,} ({m.share():.0%}), {_speed(rate)}, "
                f"{format_duration(left)} left"
            )
        self.log.info(
            message,
            extra={
                "phase": m.phase,
                "done": m.done,
                "total": m.total,
                "rate": round(rate, 1) if rate is not None else None,
                "seconds_left": round(left, 1) if left is not None else None,
                "final": final,
            },
        )


def make_progress(stream: TextIO, fmt: LogFormat, *, quiet: bool = False) -> Progress:
    """The bar for a person at a terminal reading text logs; log records for everything else."""
    if quiet:
        return NullProgress()
    if is_terminal(stream) and resolve_format(fmt, stream) == "text":
        return TerminalProgress(stream)
    return LogProgress()


class Board:
    """One line per running job on a terminal (run --parallel): each job's bar keeps its
    own line, redrawn in place; a finished job's last line stays above the others."""

    def __init__(self, stream: TextIO = sys.stderr, *, clock: Clock = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.lines: list[TerminalProgress] = []
        self.names: dict[int, str] = {}
        self.drawn = 0  # lines of the board on screen, under the cursor's line
        self._lock = threading.Lock()

    def line(self, job: str) -> Progress:
        return _BoardLine(self, job)

    def redraw(self, finished: TerminalProgress | None = None) -> None:
        with self._lock:
            now = self.clock()
            # Up to the board's first line; each line blanked to its end, then rewritten.
            out = [f"\x1b[{self.drawn}F" if self.drawn else "\r"]
            if finished is not None:
                out.append(f"\x1b[K{self.names[id(finished)]}: {finished.render(now)}\n")
                self.lines.remove(finished)
            out += [f"\x1b[K{self.names[id(p)]}: {p.render(now)}\n" for p in self.lines]
            out.append("\x1b[J")
            self.drawn = len(self.lines)
            self.stream.write("".join(out))
            self.stream.flush()


class _BoardLine:
    def __init__(self, board: Board, job: str) -> None:
        self.board = board
        self.bar = TerminalProgress(board.stream, clock=board.clock)
        board.names[id(self.bar)] = job
        self.shown = -math.inf

    def start(self, phase: str, total: int) -> None:
        self.bar.meter.begin(phase, total)
        with self.board._lock:
            if self.bar not in self.board.lines:
                self.board.lines.append(self.bar)
        self.board.redraw()

    def advance(self, amount: int) -> None:
        if not self.bar.meter.running:
            return
        self.bar.meter.done += amount
        now = self.board.clock()
        if now - self.shown >= self.bar.every:
            self.shown = now
            self.board.redraw()

    def finish(self) -> None:
        if not self.bar.meter.running:
            return
        self.bar.meter.running = False
        self.board.redraw(finished=self.bar)
