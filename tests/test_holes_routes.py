"""Reproductions of the route holes of issue 24 (P#1, P#2, P#3, P#5) and the route slips of
issue 25 (O#6), end to end through the command line against the emulator.

Each P test is marked ``xfail(strict=True)`` until the lead's fix lands; the O#6 tests hold
edges the current code keeps, and fail when the slip they name is planted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import API_KEY, SEGMENT, emails, make_job, settings_file, write_csv
from sync import folding
from sync.emulator import Emulator, make_contacts
from sync.emulator.contacts import target_id
from sync.emulator.routes import Answer
from sync.read import batches

ADDRESSES = [f"user{n}@example.com" for n in range(6000)]


def _report(path: Path) -> dict:
    report: dict = json.loads(path.read_text())["jobs"][0]
    return report


def _fold_every_file(monkeypatch: pytest.MonkeyPatch, rows: int = 500) -> None:
    """Fold every source, in batches of ``rows`` (the route of a file of 64 MiB or more)."""
    monkeypatch.setattr(folding, "FOLD_BYTES", 0)
    monkeypatch.setattr(batches, "BATCH_ROWS", rows)


# --- P#3: the fallback reload of a folded run -------------------------------------------


@pytest.fixture
def contacts_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """An account whose contacts are the addresses, that refuses per-target removal:
    ``route-missing`` has no look-up (404), ``removal-405`` answers a DELETE of one target
    with 405."""
    refusal = request.param
    with Emulator(
        API_KEY,
        segments=[SEGMENT],
        contacts=make_contacts(ADDRESSES),
        lookup_route=refusal != "route-missing",
    ) as server:
        if refusal == "removal-405":
            answer = server.respond

            def respond(call, at):  # type: ignore[no-untyped-def]
                if call.method == "DELETE" and call.path.startswith("/targets/"):
                    return Answer(405, headers={"Allow": "GET"})
                return answer(call, at)

            server.respond = respond  # type: ignore[method-assign]
        yield server


@pytest.mark.xfail(strict=True, reason="P#3")
@pytest.mark.parametrize(
    ("contacts_emulator", "joining"),
    [
        # "succeeded (reload)" today, 40 of the file's keys missing and 20 that left held:
        # the mask of the keys in the source was taken on the state before the look-ups
        # that found no contact took their keys out of it.
        pytest.param("removal-405", 0, id="removal-405"),
        # ArrowInvalid (exit 1) today: the state grew by the acknowledged additions.
        pytest.param("removal-405", 30, id="removal-405-with-additions"),
        pytest.param("route-missing", 30, id="route-missing-with-additions"),
    ],
    indirect=["contacts_emulator"],
)
def test_a_folded_fallback_reload_loads_exactly_the_files_keys(
    tmp_path, contacts_emulator, cli, monkeypatch, joining
) -> None:
    emulator = contacts_emulator
    monkeypatch.setenv("NP6_BASE_URL", emulator.url)
    config = settings_file(tmp_path, concurrency=4)
    job = make_job(tmp_path, sync={"max_removed_ratio": 0.5, "removals": "per_target"})
    # 20 keys that name no contact of the account (a look-up finds none: they leave the
    # state without a DELETE), then 5,000 that do.
    nobody = [[f"nobody{n}@example.org"] for n in range(20)]
    write_csv(tmp_path / "list.csv", nobody + emails(0, 5000))
    assert cli("run", job, "--config", config).code == 0  # no state yet: read whole
    assert emulator.members(SEGMENT) == {target_id(n) for n in range(5000)}

    _fold_every_file(monkeypatch)
    kept = [*range(20, 2000), *range(2040, 5000), *range(5000, 5000 + joining)]
    write_csv(tmp_path / "list.csv", [[f"user{n}@example.com"] for n in kept])
    result = cli("run", job, "--config", config, "--report-json", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    got = _report(tmp_path / "r.json")
    assert (got["status"], got["action"]) == ("succeeded", "reload") and got["lookup_fallback"]
    held = emulator.members(SEGMENT)
    want = {target_id(n) for n in kept}
    assert (len(want - held), len(held - want)) == (0, 0), "missing, still held"
