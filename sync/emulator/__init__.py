"""The local NP6 stand-in: ``np6-sync emulator``, ``python -m sync.emulator``, and
``Emulator`` for users' own tests."""

from __future__ import annotations

from sync.emulator.server import ALL_FAULTS, Call, Emulator, configure_parser, main

__all__ = ["ALL_FAULTS", "Call", "Emulator", "configure_parser", "main"]
