from __future__ import annotations

from sync.cli import entry

entry()
