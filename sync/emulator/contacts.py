"""The contacts of the emulated account: who a PUT's values can name.

NP6 adds contacts to a segment, never bare strings: each value of a PUT is resolved to a
contact, by its id or by a unicity value, and the segment holds the contact's id. [S]
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

# Target ids are 8 characters (000PKXK4). [S] Digits and capitals only: [I]
TARGET_ID = re.compile(r"[0-9A-Z]{8}")
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ContactsError(ValueError):
    """A contacts table that cannot be loaded; the message names the file and line."""


class Contacts:
    """Contact ids and their unicity values, read-only once built.

    A value resolves to the contact whose id it is, else to the contact holding it as a
    unicity value; an id wins when a value is both. [I] A unicity value belongs to one
    contact: that is what unicity means. [I] Whether an account matches values whatever
    their case is not documented (e-mail matching commonly folds case): ``fold_case``
    says which this account does. [I]
    """

    def __init__(self, contacts: Mapping[str, Iterable[str]]) -> None:
        self._ids: dict[str, tuple[str, ...]] = {}
        self._by_unicity: dict[str, str] = {}
        self._by_folded: dict[str, list[str]] = {}
        for target_id, values in contacts.items():
            if not TARGET_ID.fullmatch(target_id):
                raise ContactsError(f"not a target id (8 digits or capitals): {target_id!r}")
            self._ids[target_id] = tuple(values)
            for value in self._ids[target_id]:
                owner = self._by_unicity.setdefault(value, target_id)
                if owner != target_id:
                    raise ContactsError(f"unicity value {value!r} of both {owner} and {target_id}")
                owners = self._by_folded.setdefault(value.lower(), [])
                if target_id not in owners:
                    owners.append(target_id)

    def resolve(self, value: str, fold_case: bool = False) -> str | None:
        """The id of the contact a value names, or None when it names none."""
        if value in self._ids:
            return value
        owner = self._by_unicity.get(value)
        if owner is None and fold_case:
            owner = next(iter(self._by_folded.get(value.lower(), ())), None)
        return owner

    def by_unicity(self, value: str, fold_case: bool = False) -> list[str]:
        """``GET /targets?unicity=``: the ids of the contacts holding this value."""
        if fold_case:
            return list(self._by_folded.get(value.lower(), ()))
        owner = self._by_unicity.get(value)
        return [] if owner is None else [owner]

    def is_id(self, value: str) -> bool:
        return value in self._ids

    def unicity_values(self, target_id: str) -> tuple[str, ...]:
        return self._ids.get(target_id, ())

    def __contains__(self, target_id: object) -> bool:
        return target_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def target_id(number: int) -> str:
    """The ``number``-th generated id, in NP6's shape: base 36, 8 characters."""
    if not 0 <= number < 36**8:
        raise ValueError(f"no 8-character id for {number}")
    digits = []
    for _ in range(8):
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
    return "".join(reversed(digits))


def make_contacts(values: Iterable[str], start: int = 0) -> Contacts:
    """One generated contact per unicity value, ids counted up from ``start``
    (for the demo and tests)."""
    return Contacts({target_id(start + n): (value,) for n, value in enumerate(values)})


def load_contacts(path: Path) -> Contacts:
    """A contacts table from a CSV with the columns ``id`` and ``unicity`` (other columns
    are ignored); a repeated id adds a unicity value, an empty ``unicity`` none."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = _read_rows(path, csv.DictReader(f))
    except OSError as error:
        raise ContactsError(f"cannot read {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise ContactsError(f"{path}: not a readable CSV: {error}") from None
    try:
        return Contacts(rows)
    except ContactsError as error:
        raise ContactsError(f"{path}: {error}") from None


def _read_rows(path: Path, reader: csv.DictReader[str]) -> dict[str, list[str]]:
    missing = {"id", "unicity"} - set(reader.fieldnames or ())
    if missing:
        raise ContactsError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    contacts: dict[str, list[str]] = {}
    for row in reader:
        target = (row["id"] or "").strip()
        if not TARGET_ID.fullmatch(target):
            line = reader.line_num
            raise ContactsError(
                f"{path}, line {line}: not a target id (8 digits or capitals): {target!r}"
            )
        values = contacts.setdefault(target, [])
        if row["unicity"]:
            values.append(row["unicity"])
    return contacts
