"""The local NP6 stand-in: ``np6-sync emulator``, ``python -m sync.emulator``, and
``Emulator`` for users' own tests.

contacts  the account's contacts: ids, unicity values, resolution (CSV or generated)
world     segments and members, thread-safe
routes    NP6's calls: routing, request checks, answers
limits    injected and random faults, rate limit and quota windows
server    HTTP: the threaded server, request framing, request ids
emulator  ``Emulator``: lifecycle, key check, the calls record
cli       the command line
"""

from __future__ import annotations

from sync.emulator.cli import configure_parser, main, run_cli
from sync.emulator.contacts import Contacts, ContactsError, load_contacts, make_contacts, target_id
from sync.emulator.emulator import Call, Emulator
from sync.emulator.limits import ALL_FAULTS
from sync.emulator.routes import UNICITY_MEDIA_TYPE

__all__ = [
    "ALL_FAULTS",
    "UNICITY_MEDIA_TYPE",
    "Call",
    "Contacts",
    "ContactsError",
    "Emulator",
    "configure_parser",
    "load_contacts",
    "main",
    "make_contacts",
    "run_cli",
    "target_id",
]
