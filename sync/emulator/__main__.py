from __future__ import annotations

from sync.emulator.server import main

raise SystemExit(main())
