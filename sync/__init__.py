"""np6-sync: keep NP6 static segments equal to target lists kept in files."""

from __future__ import annotations

__version__ = "0.1.0"
