"""Print one command of README.md, found by what it contains, so CI runs README's own words.

    python .ci/readme_command.py 'np6-sync demo'

The command is the first line of a fenced shell block that contains the text; it exits 1
when README shows none (a README that lost its demo fails CI rather than skipping it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FENCE = re.compile(r"^```(?:bash|sh|console|shell)?\s*$")


def command(readme: str, needle: str) -> str | None:
    fenced = shell = False
    for line in readme.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            shell = fenced and bool(FENCE.match(line))
            continue
        if shell and needle in line:
            return line.strip().removeprefix("$ ")
    return None


def main() -> int:
    needle = sys.argv[1]
    readme = Path(__file__).resolve().parent.parent / "README.md"
    found = command(readme.read_text(encoding="utf-8"), needle)
    if found is None:
        print(f"README.md shows no command containing {needle!r}", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
