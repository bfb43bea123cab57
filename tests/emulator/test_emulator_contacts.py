"""The contacts table: building, loading from CSV, resolving values."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.emulator import Contacts, ContactsError, load_contacts, make_contacts, target_id


def test_generated_ids_have_np6s_shape_and_count_up() -> None:
    assert [target_id(n) for n in (0, 1, 35, 36)] == [
        "00000000",
        "00000001",
        "0000000Z",
        "00000010",
    ]
    contacts = make_contacts(["a@x.fr", "b@x.fr"], start=36**8 - 2)
    assert list(contacts) == ["ZZZZZZZY", "ZZZZZZZZ"]
    with pytest.raises(ValueError, match="no 8-character id"):
        target_id(36**8)


def test_a_value_resolves_by_id_or_unicity_and_an_id_wins() -> None:
    # "000000AB" is the id of one contact and a unicity value of another.
    contacts = Contacts({"000000AA": ["000000AB", "a@x.fr"], "000000AB": ["b@x.fr"]})
    assert contacts.resolve("a@x.fr") == "000000AA"
    assert contacts.resolve("000000AA") == "000000AA"
    assert contacts.resolve("000000AB") == "000000AB"
    assert contacts.resolve("nobody@x.fr") is None
    assert contacts.by_unicity("b@x.fr") == ["000000AB"]
    assert contacts.by_unicity("000000AA") == []  # an id is not a unicity value
    assert contacts.unicity_values("000000AA") == ("000000AB", "a@x.fr")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        pytest.param({"PKXK4": ["a"]}, "not a target id", id="short-id"),
        pytest.param({"000pkxk4": ["a"]}, "not a target id", id="lower-case"),
        pytest.param({"000000AA": ["a"], "000000AB": ["a"]}, "of both", id="shared-unicity"),
    ],
)
def test_a_bad_table_is_refused(table: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ContactsError, match=message):
        Contacts(table)


def test_a_csv_mirrors_an_account(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id,unicity,name\n000PKXK4,a@x.fr|1,Ann\n000PKXK5,,Bob\n000PKXK4,+33600000001,Ann\n",
        encoding="utf-8",
    )
    contacts = load_contacts(path)
    assert list(contacts) == ["000PKXK4", "000PKXK5"]
    assert contacts.unicity_values("000PKXK4") == ("a@x.fr|1", "+33600000001")
    assert contacts.unicity_values("000PKXK5") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("ident,unicity\nx,y\n", "missing column\\(s\\) id", id="no-id-column"),
        pytest.param("id,unicity\n000PKXK4,a\nbad,b\n", "line 3: not a target id", id="bad-id"),
        pytest.param("id,unicity\n000PKXK4,a\n000PKXK5,a\n", "of both", id="shared"),
    ],
)
def test_a_bad_csv_names_the_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ContactsError, match=message) as raised:
        load_contacts(path)
    assert "contacts.csv" in str(raised.value)


def test_an_unreadable_csv_is_a_contacts_error(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match="cannot read"):
        load_contacts(tmp_path / "missing.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,unicity\n000PKXK4,é\n".encode("latin-1"))
    with pytest.raises(ContactsError, match="not a readable CSV"):
        load_contacts(latin)
