"""The mutation score per module, from the last ``mutmut run``.

Killed mutants (a timeout or a crash of the test process counts as killed) over the
mutants that are not marked equivalent in ``equivalent.md`` beside this file. Run from
the repository root:

    .venv/bin/python tests/mutation/score.py [--min 90]

Lists every survivor that is not marked equivalent; with ``--min``, exits 1 when a
module scores below it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

EQUIVALENT = Path(__file__).with_name("equivalent.md")
# A mutant that crashes the interpreter (Arrow's C++ given no strings to join) fails the
# test run as surely as a failed assertion.
KILLED = {"killed", "timeout", "segfault"}


def results() -> dict[str, str]:
    """Each mutant's status, as ``mutmut results --all true`` prints them."""
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run(
        [str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line)
    return {name: status for name, status in pairs if "__mutmut_" in name}


def equivalent() -> set[str]:
    """The mutants ``equivalent.md`` names (in backticks, in its list items)."""
    text = EQUIVALENT.read_text(encoding="utf-8") if EQUIVALENT.exists() else ""
    items = (line for line in text.splitlines() if line.startswith("- "))
    return {name for line in items for name in re.findall(r"`([^`]+__mutmut_\d+)`", line)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=float, default=None, help="lowest acceptable score (%%)")
    args = parser.parse_args(argv)
    marked = equivalent()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for name, status in sorted(results().items()):
        module = name.rsplit(".", 1)[0]
        if status == "not checked":
            by_module[module]["not checked"] += 1
            continue
        if name in marked and status not in KILLED:
            by_module[module]["equivalent"] += 1
            continue
        by_module[module]["killed" if status in KILLED else "alive"] += 1
        if status not in KILLED:
            survivors.append(f"{name}: {status}")
    low = False
    print(f"{'module':<24} {'killed':>6} {'alive':>6} {'equiv':>6} {'unrun':>6} {'score':>7}")
    for module, counts in sorted(by_module.items()):
        tested = counts["killed"] + counts["alive"]
        score = 100.0 * counts["killed"] / tested if tested else None
        low = low or (args.min is not None and score is not None and score < args.min)
        shown = "-" if score is None else f"{score:.1f}%"
        print(
            f"{module:<24} {counts['killed']:>6} {counts['alive']:>6} "
            f"{counts['equivalent']:>6} {counts['not checked']:>6} {shown:>7}"
        )
    for line in survivors:
        print(f"  survived: {line}")
    return 1 if low else 0


if __name__ == "__main__":
    raise SystemExit(main())
