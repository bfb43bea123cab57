"""Progress: a small interface, silent for tests and non-terminal runs."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
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


class TerminalProgress:
    """One self-rewriting line on a terminal: done / total, rate and time left."""

    def __init__(self, stream: TextIO = sys.stderr, every: float = 0.2) -> None:
        self.stream = stream
        self.every = every
        self.phase = ""
        self.total = 0
        self.done = 0
        self.started = self.shown = 0.0

    def start(self, phase: str, total: int) -> None:
        self.phase, self.total, self.done = phase, total, 0
        self.started = time.monotonic()
        self.shown = 0.0

    def advance(self, amount: int) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.shown >= self.every:
            self.shown = now
            self._draw(now)

    def finish(self) -> None:
        if self.total:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else 0.0
        share = self.done / self.total if self.total else 1.0
        self.stream.write(
            f"\r{self.phase}: {self.done:,}/{self.total:,} targets ({share:.0%}), "
            f"{rate:,.0f}/s, {left:,.0f}s left   "
        )
        self.stream.flush()
