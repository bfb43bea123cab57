"""README.md and docs/: every command they show is run here, or tagged with why not and
parse-checked; every job they show validates; every link leads somewhere.

A fenced shell block (sh, bash, console) follows a tag, blank lines allowed between:
``<!-- run -->`` or ``<!-- not run: why -->``. The blocks tagged ``run`` of one file run
in order, in one temporary folder, against the emulator on loopback (docs/development.md,
"The documentation's commands").
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FIRST_JOB_SEGMENT
from sync.cli import _parser, main
from sync.config import Job, Settings
from sync.job.fanout import jobs_from

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELLS = {"sh", "bash", "console"}
LANGUAGES = SHELLS | {"yaml", "json", "python", "text"}
FENCE = re.compile(r"^\s*```(\S*)\s*$")
TAG = re.compile(r"^<!--\s*(run|not run:.*?)\s*-->$")
# What the test sets itself: an `export` of these in a block is skipped.
SET_BY_THE_TEST = {"NP6_API_KEY", "NP6_BASE_URL"}
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
JOB_WORDS = {"segment_id", "segments", "segment_by", "source", "targets", "state", "sync"}
SETTINGS_WORDS = set(Settings.model_fields) - {"concurrency"}  # sync: has no concurrency
# A job fragment (a `source:` alone, say) is checked inside this job.
BASE_JOB: dict[str, Any] = {
    "name": "doc",
    "segment_id": 1234,
    "source": {"path": "list.csv"},
    "targets": {"columns": ["email"]},
}
# The lines CI and newcomers take from README word for word.
DEMO = "python3 -m venv .venv && .venv/bin/pip install -q . && .venv/bin/np6-sync demo"
TESTS = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, counted from 1
    lang: str
    text: str
    tag: str | None

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.tag == "run"


def fenced_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    tag: str | None = None
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
            assert end is not None, f"{page.name}:{i + 1}: a fence that never closes"
            body = "\n".join(lines[i + 1 : end]) + "\n"
            found.append(Block(page, i + 1, opening.group(1), body, tag))
            tag, i = None, end + 1
            continue
        marker = TAG.match(lines[i].strip())
        if marker:
            tag = marker.group(1)
        elif lines[i].strip():
            tag = None  # a tag belongs to the block right after it
        i += 1
    return found


BLOCKS = [block for page in PAGES for block in fenced_blocks(page)]


def of(*langs: str) -> list[Any]:
    return [pytest.param(b, id=b.name) for b in BLOCKS if b.lang in langs]


def command_lines(block: Block) -> list[str]:
    """The block's commands: continuations joined, comments-only and output lines left out."""
    lines = block.text.replace("\\\n", " ").splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def words_of(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def simple_commands(words: list[str]) -> list[list[str]]:
    """The words of each command of a line, without operators and redirections."""
    commands: list[list[str]] = [[]]
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in OPERATORS:
            commands.append([])
        elif set(word) <= set("<>&|0123456789") and any(c in word for c in "<>"):
            skip = not word.endswith("&1")  # the redirection's target follows
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def np6_sync_argv(command: list[str]) -> list[str] | None:
    """The arguments np6-sync receives from one command, or None when it is another one."""
    while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", command[0]):
        command = command[1:]  # VAR=value before the command
    if not command:
        return None
    if Path(command[0]).name == "np6-sync":
        return command[1:]
    if Path(command[0]).name.startswith("python") and command[1:3] == ["-m", "sync"]:
        return command[3:]
    if command[:2] == ["docker", "run"]:  # the image's entrypoint is np6-sync
        image = next(i for i, w in enumerate(command) if w.split(":")[0] == "np6-sync")
        return command[image + 1 :]
    return None


def parse(argv: list[str], where: str) -> None:
    try:
        _parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):  # --help and --version exit 0
            pytest.fail(f"{where}: np6-sync does not accept {shlex.join(argv)}")


def test_every_block_says_what_it_is_and_every_shell_block_is_tagged() -> None:
    assert BLOCKS, "no fenced block found"
    for block in BLOCKS:
        assert block.lang in LANGUAGES, f"{block.name}: a fence without a known language"
        if block.lang in SHELLS:
            assert block.tag, f"{block.name}: tag it <!-- run --> or <!-- not run: why -->"
        if block.tag and block.tag.startswith("not run"):
            assert block.tag.split(":", 1)[1].strip(), f"{block.name}: say why it is not run"
        if block.runs:
            assert block.lang in {"sh", "bash", "python"}, f"{block.name}: cannot run {block.lang}"


@pytest.mark.parametrize("block", of(*SHELLS))
def test_a_shell_block_parses(block: Block) -> None:
    script = "\n".join(command_lines(block)) + "\n"
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, f"{block.name}: {checked.stderr}"
    for line in command_lines(block):
        for command in simple_commands(words_of(line)):
            argv = np6_sync_argv(command)
            if argv is not None:
                parse(argv, block.name)


def commands_in(node: Any) -> list[list[str]]:
    """The np6-sync calls a manifest or workflow holds: a container's args (the image's
    entrypoint is np6-sync) and the lines of a step's `run`."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        if "np6-sync" in str(node.get("image", "")) and isinstance(node.get("args"), list):
            found.append([str(a) for a in node["args"]])
        if isinstance(node.get("run"), str):
            script = node["run"].replace("\\\n", " ")
            for line in script.splitlines():
                for command in simple_commands(words_of(line)) if line.strip() else []:
                    argv = np6_sync_argv(command)
                    found += [] if argv is None else [argv]
        for value in node.values():
            found += commands_in(value)
    elif isinstance(node, list):
        for item in node:
            found += commands_in(item)
    return found


@pytest.mark.parametrize("block", of("yaml"))
def test_a_yaml_block_loads_and_a_job_or_settings_validate(block: Block, tmp_path) -> None:
    for document in yaml.safe_load_all(block.text):
        assert document is not None, f"{block.name}: an empty document"
        for argv in commands_in(document):
            parse(argv, block.name)
        if not isinstance(document, dict):
            continue
        if set(document) & JOB_WORDS and not {"apiVersion", "jobs"} & set(document):
            job = dict(document) if "name" in document else {**BASE_JOB, **document}
            if "segments" in job or "segment_by" in job:
                job.pop("segment_id", None)
            jobs_from(job, tmp_path, block.name)  # ConfigError lists every problem
        elif set(document) & SETTINGS_WORDS:
            Settings.model_validate(document)


def test_the_job_words_are_the_jobs() -> None:
    assert JOB_WORDS - {"segments", "segment_by"} <= set(Job.model_fields)


@pytest.mark.parametrize("block", of("json"))
def test_a_json_block_loads(block: Block) -> None:
    json.loads(block.text)


@pytest.mark.parametrize("block", of("python"))
def test_a_python_block_compiles(block: Block) -> None:
    compile(block.text, block.name, "exec")


RUNNABLE = sorted({b.page for b in BLOCKS if b.runs})


def page_ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


@pytest.mark.parametrize("page", RUNNABLE, ids=page_ids(RUNNABLE))
def test_the_blocks_tagged_run_run_in_order(
    page: Path, env, emulator, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    for block in (b for b in BLOCKS if b.page == page and b.runs):
        if block.lang == "python":
            # The documentation's own code, run as a reader pastes it into a notebook.
            exec(compile(block.text, block.name, "exec"), {"__name__": "__docs__"})  # noqa: S102
            continue
        for line in command_lines(block):
            run_line(line, block.name, environ, capsys)
    if page.name == "README.md" and page.parent == ROOT:  # its first job filled the segment
        assert emulator.members(FIRST_JOB_SEGMENT) == FIRST_JOB


# The keys of README's first job, after its transforms (strip, lower).
FIRST_JOB = {"camille.1@example.fr", "louis.2@example.fr", "lea.3@example.fr"}


def run_line(line: str, where: str, environ: dict[str, str], capsys) -> None:
    expected = re.search(r"#.*\bexits? (\d+)\b", line)
    code_wanted = int(expected.group(1)) if expected else 0
    words = words_of(line)
    if words[0] == "export" and words[1].split("=")[0] in SET_BY_THE_TEST:
        return  # the test has pointed it at the emulator
    [command, *more] = simple_commands(words)
    argv = np6_sync_argv(command)
    if argv is not None and not more and len(words) == len(command) and "$" not in line:
        capsys.readouterr()
        code = main([w for word in argv for w in (sorted(glob.glob(word)) or [word])])
        output = capsys.readouterr()
        text = output.out + output.err
    else:
        done = subprocess.run(
            ["bash", "-c", line], env=environ, capture_output=True, text=True, timeout=60
        )
        code, text = done.returncode, done.stdout + done.stderr
    assert code == code_wanted, f"{where}: `{line}` exited {code}\n{text}"


def test_readme_keeps_the_lines_taken_from_it_word_for_word() -> None:
    readme = [b for b in BLOCKS if b.page.name == "README.md" and b.lang in SHELLS]
    lines = {line.strip() for b in readme for line in b.text.splitlines()}
    assert DEMO in lines  # CI runs it in a fresh clone
    assert TESTS in lines
    assert '.venv/bin/pytest -m "not slow"' in lines
    for page in PAGES:
        assert "install 'np6-sync" not in page.read_text(), f"{page.name}: not on PyPI"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=page_ids(PAGES))
def test_every_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: no heading for {target}"


def test_the_calls_inside_manifests_and_workflows_are_found() -> None:
    container = {"image": "registry.example/np6-sync:1", "args": ["run", "/jobs/a.yaml"]}
    step = {"run": "pip install .\nnp6-sync plan jobs/*.yaml --detailed-exitcode || [ $? -eq 2 ]"}
    found = commands_in({"spec": {"containers": [container]}, "steps": [step]})
    assert found == [["run", "/jobs/a.yaml"], ["plan", "jobs/*.yaml", "--detailed-exitcode"]]
