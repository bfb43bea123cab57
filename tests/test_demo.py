"""np6-sync demo: the example job's four runs, on an emulated account with contacts."""

from __future__ import annotations

import re


def test_the_demo_tells_its_four_steps_on_contact_ids(cli, tmp_path) -> None:
    result = cli("demo", "--keep", tmp_path / "demo")
    assert result.code == 0, result.err
    out = result.out
    assert "The emulated NP6 account holds 1,100 contacts" in out
    titles = re.findall(r"^(\d)\. (.*)$", out, flags=re.MULTILINE)
    assert [n for n, _ in titles] == ["1", "2", "3", "4"]
    holds = re.findall(r"now holds ([\d,]+) targets: contact ids \((\w+), (\w+), \.\.\.\)", out)
    assert [count for count, *_ in holds] == ["1,000", "1,000", "1,040", "1,035"]
    assert all(re.fullmatch(r"[0-9A-Z]{8}", i) for _, *ids in holds for i in ids)
    assert holds[-1][1:] == ("00000005", "00000006")  # the 5 who left are the first five
    assert "NP6 added" not in out  # every key named a contact of the account
    rows = (tmp_path / "demo" / "newsletter.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 1 + 1_035
