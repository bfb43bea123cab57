from __future__ import annotations

from sync.emulator.cli import main

raise SystemExit(main())
