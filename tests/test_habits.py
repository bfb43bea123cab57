"""One set of habits across the commands, held by tables built from the parser itself:
a new command, or a new option, cannot forget one."""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import sync
from conftest import SEGMENT, emails, make_job, settings_file, write_csv
from sync.cli import _parser, commands_of, main
from sync.commands.common import output_path

COMMANDS = commands_of(_parser())
GLOBAL_FLAGS = ("--config", "-v", "--verbose", "-q", "--quiet", "--log-format")
# Options of type Path that name a file or folder read, never one written to.
READ_PATHS = {"--config", "--from", "--contacts", "--keep"}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    if parser.prog.endswith(" emulator"):  # its options are added when it is chosen
        parser.parse_known_args(["--help-never"])
    return {s for action in parser._actions for s in action.option_strings}


def minimal_words(parser: argparse.ArgumentParser) -> list[str]:
    """The least a command accepts: a word for each positional and required option."""
    words: list[str] = []
    grouped = {id(a) for g in parser._mutually_exclusive_groups for a in g._group_actions}
    for group in parser._mutually_exclusive_groups:
        if group.required:
            first = group._group_actions[0]
            words += [first.option_strings[0], *([] if first.nargs == 0 else ["1"])]
    for action in parser._actions:
        if not action.option_strings and action.dest != "help":
            words.append("x.yaml")
        elif action.required and id(action) not in grouped:
            words += [action.option_strings[-1], "1"]
    return words


@pytest.mark.parametrize("flag", GLOBAL_FLAGS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_the_global_flags(command: str, flag: str) -> None:
    parser = COMMANDS[command]
    assert flag in option_strings(parser)
    value = {"--config": ["np6.yaml"], "--log-format": ["json"]}.get(flag, [])
    args = _parser().parse_args([*command.split(), *minimal_words(parser), flag, *value])
    assert args.func is not None


def test_one_spelling_per_option() -> None:
    """Each destination is spelled the same way by every command that has it."""
    spellings: dict[str, set[str]] = {}
    for parser in COMMANDS.values():
        option_strings(parser)
        for action in parser._actions:
            longs = {s for s in action.option_strings if s.startswith("--")}
            if longs:
                spellings.setdefault(action.dest, set()).update(longs)
    assert {dest: s for dest, s in spellings.items() if len(s) > 1} == {}
    every = set().union(*spellings.values())
    assert "--sample" not in every and "--samples" in every


def test_a_segment_is_named_the_same_way_everywhere_but_init() -> None:
    for command, parser in COMMANDS.items():
        strings = option_strings(parser)
        takes_jobs = any(a.dest == "jobs" for a in parser._actions)
        assert ("--segment" in strings) == takes_jobs, command
    assert "--segment-id" in option_strings(COMMANDS["init"])


def writes(action: argparse.Action) -> bool:
    return action.type is output_path


def output_options() -> list[tuple[str, str]]:
    found = []
    for command, parser in COMMANDS.items():
        option_strings(parser)
        for action in parser._actions:
            if action.type is Path:
                assert set(action.option_strings) <= READ_PATHS, (command, action.option_strings)
            if writes(action):
                found.append((command, action.option_strings[-1]))
    return sorted(found)


def _json(text: str) -> None:
    assert json.loads(text)["jobs"][0]["name"] == "list"


def _markdown(text: str) -> None:
    assert text.startswith("## np6-sync: 1 job")


def _prometheus(text: str) -> None:
    assert any(f.name == "np6sync_exit_code" for f in text_string_to_metric_families(text))


def _job_file(text: str) -> None:
    assert yaml.safe_load(text)["segment_id"] == SEGMENT


# What each option writes to stdout, checked: a new output option needs its line here.
STDOUT_CHECKS = {
    "--report-json": _json,
    "--summary-md": _markdown,
    "--metrics-file": _prometheus,
    "--output": _job_file,
}


@pytest.mark.parametrize(("command", "option"), output_options())
def test_a_dash_writes_to_stdout_and_the_table_goes_to_stderr(
    command: str, option: str, tmp_path: Path, cli
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 60))
    if command == "init":
        result = cli("init", "list.csv", "--segment-id", SEGMENT, option, "-")
    else:
        job = make_job(tmp_path)
        result = cli(*command.split(), job, "--config", settings_file(tmp_path), option, "-")
    assert result.code == 0, result.err
    STDOUT_CHECKS[option](result.out)
    assert not (tmp_path / "-").exists()
    if command != "init":
        assert "job" in result.err and "status" in result.err  # the table


def test_two_outputs_cannot_both_be_stdout(tmp_path: Path, cli) -> None:
    job = make_job(tmp_path)
    result = cli("plan", job, "--report-json", "-", "--summary-md", "-")
    assert result.code == 2
    assert "only one output can be -" in result.err


@pytest.mark.parametrize(
    "words",
    [
        pytest.param(["validate", "{job}"], id="validate"),
        pytest.param(["state", "show", "{job}"], id="state-show"),
        pytest.param(["plan", "{job}", "--report-json", "-"], id="plan-report-to-stdout"),
        pytest.param(["validate", "{missing}"], id="validate-fails"),
        pytest.param(["run", "{job}", "--config", "{bad}"], id="bad-settings"),
        pytest.param(["emulator", "--port", "0", "--contacts", "{missing}"], id="emulator"),
    ],
)
def test_log_format_json_makes_every_stderr_line_json(
    words: list[str], tmp_path: Path, cli
) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 5))
    (tmp_path / "bad.yaml").write_text("concurency: 2\n")
    bad, missing = tmp_path / "bad.yaml", tmp_path / "no.yaml"
    names = {"job": make_job(tmp_path), "missing": missing, "bad": bad}
    args = [str(w).format(**names) for w in words]
    result = cli(*args, "--log-format", "json", "-v")
    lines = [line for line in result.err.splitlines() if line]
    assert lines or words[0] in ("validate", "state"), "nothing on stderr"
    for line in lines:
        assert isinstance(json.loads(line), dict), line


@pytest.mark.parametrize(
    ("words", "said"),
    [
        pytest.param(["validate"], "the following arguments are required", id="missing"),
        pytest.param(["nosuch"], "invalid choice", id="unknown-command"),
        pytest.param(["state", "show", "--log-format=json"], "required", id="state-show"),
        pytest.param(["init", "x.csv", "--segment-id", "0"], "positive", id="init"),
    ],
)
def test_a_usage_error_is_a_json_line_too(words: list[str], said: str, capsys) -> None:
    if not any(w.startswith("--log-format") for w in words):
        words = [*words, "--log-format", "json"]
    with pytest.raises(SystemExit) as exit_:
        main(words)
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert said in json.loads(line)["msg"]


def test_the_version_is_the_installed_one(capsys) -> None:
    installed = metadata.version("np6-sync")
    assert sync.__version__ == installed
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"np6-sync {installed}"


def two_jobs(folder: Path, first: str = "news", second: str = "promo") -> list[Path]:
    write_csv(folder / "list.csv", emails(0, 5))
    return [
        make_job(folder, name=first, segment_id=SEGMENT),
        make_job(folder, name=second, segment_id=99),
    ]


@pytest.mark.parametrize("command", ["validate", "state show", "plan"])
@pytest.mark.parametrize(
    ("segment", "chosen"),
    [
        pytest.param("promo", "promo", id="by-name"),
        pytest.param("99", "promo", id="by-id"),
        pytest.param(str(SEGMENT), "news", id="by-the-other-id"),
    ],
)
def test_a_segment_is_named_by_id_or_name(command, segment, chosen, tmp_path, cli) -> None:
    jobs = two_jobs(tmp_path)
    result = cli(*command.split(), *jobs, "--segment", segment)
    assert result.code == 0, result.err
    other = {"news", "promo"} - {chosen}
    assert chosen in result.out and not any(f"{name}" in result.out for name in other)


def test_all_digits_is_a_name_when_a_job_has_it(tmp_path, cli) -> None:
    jobs = two_jobs(tmp_path, first="news", second=str(SEGMENT))  # named like news' id
    result = cli("validate", *jobs, "--segment", str(SEGMENT))
    assert result.code == 2
    assert "rename" in result.err


def test_a_name_that_is_all_digits_and_matches_only_a_name(tmp_path, cli) -> None:
    jobs = two_jobs(tmp_path, first="news", second="555")
    result = cli("validate", *jobs, "--segment", "555")
    assert result.code == 0, result.err
    assert "job 555 -> segment 99" in result.out and "news" not in result.out


def test_no_job_matches(tmp_path, cli) -> None:
    result = cli("validate", *two_jobs(tmp_path), "--segment", "777")
    assert result.code == 2
    assert "no job is named '777' and no job has segment id 777" in result.err


@pytest.mark.parametrize("command", ["validate", "state show", "init"])
def test_a_command_without_settings_still_checks_a_config_given(command, tmp_path, cli) -> None:
    write_csv(tmp_path / "list.csv", emails(0, 5))
    bad = tmp_path / "bad.yaml"
    bad.write_text("concurency: 2\n")
    target = ["list.csv", "--segment-id", "7"] if command == "init" else [make_job(tmp_path)]
    result = cli(*command.split(), *target, "--config", bad)
    assert result.code == 2
    assert "concurency: unknown key" in result.err
    good = settings_file(tmp_path)
    assert (
        cli(
            *command.split(), *target, "--config", good, "--force" if command == "init" else "-q"
        ).code
        == 0
    )


def test_no_words_at_all_is_a_usage_error_not_a_traceback(capsys) -> None:
    """`np6-sync` alone: the first thing a newcomer types."""
    with pytest.raises(SystemExit) as exited:  # argparse's own exit, as for every usage error
        main([])
    assert exited.value.code == 2
    err = capsys.readouterr().err

    assert "the following arguments are required: COMMAND" in err and "Traceback" not in err
