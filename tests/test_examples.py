"""The examples parse, use the image's mount points, and call commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync.cli import _parser
from sync.config import load_job

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# The image's mount points: the folders its Dockerfile makes.
MOUNTS = set(re.findall(r"mkdir -p ((?:/\w+ ?)+)", (ROOT / "Dockerfile").read_text())[0].split())
CRONJOBS = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))


def documents(path: Path) -> dict[str, dict[str, Any]]:
    """The manifests of a file by kind/name."""
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(path.read_text())}


def parses(argv: list[str]) -> Any:
    """The real command line's reading of ``argv``; argparse exits on what does not exist."""
    try:
        return _parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"np6-sync does not accept: {shlex.join(argv)}")


def test_the_dockerfile_documents_its_mount_points() -> None:
    assert {"/jobs", "/config", "/data", "/state"} == MOUNTS


@pytest.mark.parametrize("path", CRONJOBS, ids=[p.name for p in CRONJOBS])
def test_a_cronjob_runs_one_at_a_time_with_the_key_from_a_secret(path: Path, tmp_path) -> None:
    manifests = documents(path)
    [cronjob] = [m for m in manifests.values() if m["kind"] == "CronJob"]
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NP6_API_KEY"]["valueFrom"]["secretKeyRef"]["key"]
    assert "value" not in env["NP6_API_KEY"]

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) <= MOUNTS
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in mounts.values()} == volumes
    assert all(m.get("readOnly") for path_, m in mounts.items() if path_ != "/state")

    args = parses(container["args"])  # the image's entrypoint is np6-sync
    assert args.command == "run"
    assert args.pushgateway.startswith("http")

    # The job files the ConfigMap mounts are valid and keep their state where it lasts.
    for job_path in args.jobs:
        folder, name = job_path.rsplit("/", 1)
        assert folder == "/jobs"
        [config_map] = [
            m for m in manifests.values() if m["kind"] == "ConfigMap" and name in m["data"]
        ]
        (tmp_path / name).write_text(config_map["data"][name])
        job = load_job(tmp_path / name)
        if job.state_url is None:
            assert job.state.path and job.state.path.startswith("/state/"), job.state.path
            assert "/state" in mounts and not mounts["/state"].get("readOnly")
        else:
            assert job.state_url.startswith("s3://")
        if job.source_url is None:
            assert job.source.path.startswith("/data/") and "/data" in mounts


def test_the_examples_cover_state_on_a_volume_and_on_s3() -> None:
    texts = [p.read_text() for p in CRONJOBS]
    assert any("path: /state/" in t for t in texts)
    assert any("path: s3://" in t for t in texts)


def workflow() -> dict[Any, Any]:
    return yaml.safe_load((EXAMPLES / "github-actions" / "np6-sync.yml").read_text())


def np6_sync_commands(script: str) -> list[list[str]]:
    """Every np6-sync call of a step's shell script, without what the shell does after it."""
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        for start in [i for i, w in enumerate(words) if w == "np6-sync"]:
            rest = words[start + 1 :]
            stop = next((i for i, w in enumerate(rest) if w in ("||", "&&", "|", ";")), None)
            calls.append(rest[:stop])
    return calls


def test_the_workflow_plans_pull_requests_and_runs_main() -> None:
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    commands: dict[str, list[Any]] = {}
    for name, job in flow["jobs"].items():
        for step in job["steps"]:
            for argv in np6_sync_commands(step.get("run", "")):
                commands.setdefault(name, []).append(parses(argv))
    assert "pull_request" in flow["jobs"]["plan"]["if"]
    assert "refs/heads/main" in flow["jobs"]["run"]["if"]
    plans = [a for a in commands["plan"] if a.command == "plan"]
    assert plans and all(a.detailed_exitcode and a.summary_md for a in plans)
    runs = [a for a in commands["run"] if a.command == "run"]
    assert runs and all(a.summary_md for a in runs)
    assert {a.command for args in commands.values() for a in args} <= {"plan", "run", "validate"}


def test_the_workflow_takes_the_key_from_a_secret() -> None:
    for job in workflow()["jobs"].values():
        assert job["env"]["NP6_API_KEY"] == "${{ secrets.NP6_API_KEY }}"
