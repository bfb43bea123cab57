"""The seconds each phase of a job took, as the report's ``phase_s`` carries them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator


class PhaseTimer:
    """Adds the seconds spent in each phase to ``phases`` (the report's phase_s)."""

    def __init__(
        self, phases: dict[str, float], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.phases = phases
        self.clock = clock

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = self.clock()
        try:
            yield
        finally:
            elapsed = self.clock() - started
            self.phases[phase] = round(self.phases.get(phase, 0.0) + elapsed, 4)


def phase_reached(phases: dict[str, float], *, connected: bool, sending: bool) -> str:
    """Where a job stopped: ``send`` once sending has begun, ``preflight`` once NP6 was
    called before it, else the last phase timed (``lock`` before any)."""
    if sending:
        return "send"
    if connected:
        return "preflight"
    return next(reversed(phases), "lock")
