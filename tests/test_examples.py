"""The examples run as written: each manifest's jobs, args, environment and mounts.

The Kubernetes manifests and the container command are run here, not only read: their
jobs, settings, arguments and environment, in a private mount namespace whose root is a
read-only tmpfs holding only the system folders and this interpreter, with the volumes the
manifest declares (configMaps and read-only claims bound read-only, the state's claim and
the emptyDir writable), as the manifest's user. That needs root and mount(2), as CI has;
elsewhere those tests are skipped, saying why. What cannot run here is parse-checked and
says so: `kubectl` (the manifests are validated against Kubernetes' schemas by
kubernetes-validate, offline), `docker` (its command is read by a parser of the docker run
options it uses, then run in the same sandbox as the image would run it), and the
workflow's setup steps (checked against GitHub's workflow schema by check-jsonschema).
"""

from __future__ import annotations

import argparse
import csv
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_remote import S3Server, s3_server  # noqa: F401  (the moto server, a fixture)

from conftest import API_KEY, SEGMENT
from sync.cli import _parser
from sync.config import load_job
from sync.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# The image's mount points: the folders its Dockerfile makes.
MOUNTS = set(re.findall(r"mkdir -p ((?:/\w+ ?)+)", DOCKERFILE)[0].split())
CRONJOBS = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))
DOCKER_RUN = EXAMPLES / "docker" / "run.sh"
BIN = Path(sys.executable).parent
# podFailurePolicy is GA from Kubernetes 1.31 (timeZone from 1.27); and the newest schemas.
KUBERNETES_VERSIONS = ["1.31", None]
TMP = "/tmp"  # noqa: S108  (the container's /tmp, an emptyDir or tmpfs; not this machine's)
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "fake-access-key", "AWS_SECRET_ACCESS_KEY": "fake-secret-6e1f0a"}


def documents(path: Path) -> dict[str, dict[str, Any]]:
    """The manifests of a file by kind/name."""
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(path.read_text())}


def cronjob_of(path: Path) -> dict[str, Any]:
    [cronjob] = [m for m in documents(path).values() if m["kind"] == "CronJob"]
    return cronjob


def pod_of(cronjob: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def parses(argv: list[str]) -> Any:
    """The real command line's reading of ``argv``; argparse exits on what does not exist."""
    try:
        return _parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"np6-sync does not accept: {shlex.join(argv)}")


def test_the_dockerfile_documents_its_mount_points() -> None:
    assert {"/jobs", "/config", "/data", "/state"} == MOUNTS


# --- the manifests, read -------------------------------------------------------------


@pytest.mark.parametrize("path", CRONJOBS, ids=[p.name for p in CRONJOBS])
def test_a_cronjob_runs_one_at_a_time_with_the_key_from_a_secret(path: Path, tmp_path) -> None:
    manifests = documents(path)
    cronjob = cronjob_of(path)
    assert cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = pod_of(cronjob)
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NP6_API_KEY"]["valueFrom"]["secretKeyRef"]["key"]
    assert "value" not in env["NP6_API_KEY"]

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) <= MOUNTS | {TMP}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {m["name"] for m in mounts.values()} == set(volumes)
    assert all(m.get("readOnly") for path_, m in mounts.items() if path_ not in ("/state", TMP))
    assert "emptyDir" in volumes[mounts[TMP]["name"]]

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
            assert str(job.rejects_path).startswith("/state/")
        else:
            assert job.state_url.startswith("s3://")
            assert job.rejects_url is not None  # not on the read-only /jobs
        if job.source_url is None:
            assert job.source.path.startswith("/data/") and "/data" in mounts


@pytest.mark.parametrize("path", CRONJOBS, ids=[p.name for p in CRONJOBS])
def test_a_cronjob_follows_kubernetes_practice(path: Path) -> None:
    cronjob = cronjob_of(path)
    assert cronjob["spec"]["timeZone"]
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0 and job["backoffLimit"] >= 1
    # 2 (config), 3 (guard) and 4 (lock) fail the Job at once; 1 is retried.
    rules = job["podFailurePolicy"]["rules"]
    fail_job = [r["onExitCodes"] for r in rules if r["action"] == "FailJob"]
    assert fail_job == [{"containerName": "np6-sync", "operator": "In", "values": [2, 3, 4]}]
    assert all(1 not in r.get("onExitCodes", {}).get("values", []) for r in rules)
    pod = pod_of(cronjob)
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it
    # The "restricted" Pod Security Standard, and a read-only root.
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    resources = container["resources"]
    assert resources["requests"]["memory"] and resources["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    [tmp] = [v for v in pod["volumes"] if v["name"] == mounts[TMP]]
    assert tmp["emptyDir"]["sizeLimit"]


def kubernetes_validate(path: Path, version: str | None) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "kubernetes-validate"), "--strict", "--quiet"]
    command += [*(["-k", version] if version else []), str(path)]  # options first
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "newest")
@pytest.mark.parametrize("path", CRONJOBS, ids=[p.name for p in CRONJOBS])
def test_the_manifests_validate_against_kubernetes_schemas(
    path: Path, version: str | None, tmp_path: Path
) -> None:
    # kubernetes-validate (test extra) ships the schemas: no cluster, no network.
    result = kubernetes_validate(path, version)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and it does refuse a mistake: a misspelt field of the security context.
    wrong = tmp_path / path.name
    wrong.write_text(path.read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"))
    assert kubernetes_validate(wrong, version).returncode != 0


def test_the_examples_cover_state_on_a_volume_and_on_s3() -> None:
    texts = [p.read_text() for p in CRONJOBS]
    assert any("path: /state/" in t for t in texts)
    assert any("path: s3://" in t for t in texts)


# --- a sandbox: the manifests' mounts, user and environment -----------------------------


def _sandbox_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root, to mount the manifests' read-only volumes and root (CI runs as root)"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux, coreutils)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec",
         'd=$(mktemp -d); mount -t tmpfs probe "$d"; mount -o remount,ro "$d"; umount "$d"; '
         'rmdir "$d"'],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"mount(2) in a private mount namespace is refused: {probe.stderr.strip()}"
    return None


_UNAVAILABLE = _sandbox_unavailable()
needs_sandbox = pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))


@dataclass
class Volume:
    path: str  # inside the container
    source: Path | None  # a host folder bound there; None: a fresh tmpfs
    read_only: bool = False
    size: str = "64m"  # a tmpfs's size


@dataclass
class Container:
    """What the runtime would give the process: mounts, user, environment, command."""

    argv: list[str]
    env: dict[str, str]
    volumes: list[Volume]
    user: int = 10001
    groups: list[int] = field(default_factory=lambda: [10001])
    read_only_root: bool = True

    def run(self, root: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run in a private mount namespace, chrooted into ``root``: a tmpfs with the host's
        system folders and this interpreter bound read-only, then the volumes; the root
        then read-only when the container says so, the process as ``user``, from ``/``."""
        # The checkout is bound in with its own mode: the container's user must get in.
        assert os.stat(ROOT).st_mode & 0o001, (
            f"{ROOT} is closed to other users: `chmod o+rx` it, the containers' user "
            f"{self.user} runs np6-sync from this checkout (.ci/run does)"
        )
        root.mkdir(parents=True, exist_ok=True)
        binds, links = _system_folders()

        lines = [f"mount -t tmpfs -o mode=0755,size=16m np6-root {q(root)}"]
        lines += [f"ln -s {q(os.readlink(link))} {q(f'{root}{link}')}" for link in links]
        mounts = [(p, Volume(p, Path(p), read_only=True)) for p in binds]
        mounts += [(v.path, v) for v in self.volumes]
        for path, volume in sorted(mounts, key=lambda m: m[0].count("/")):
            inside = q(f"{root}{path}")
            lines.append(f"mkdir -p {inside}")
            if volume.source is None:
                lines.append(f"mount -t tmpfs -o mode=1777,size={volume.size} tmp {inside}")
            else:
                lines.append(f"mount --rbind {q(str(volume.source))} {inside}")
            if volume.read_only:
                lines.append(f"mount -o remount,bind,ro {inside}")
        if self.read_only_root:
            lines.append(f"mount -o remount,ro {q(root)}")
        groups = ",".join(map(str, self.groups))
        env = [f"{k}={v}" for k, v in self.env.items()]
        lines.append(
            f"exec chroot --userspec={self.user}:{self.groups[0]} --groups={groups} {q(root)} "
            f"/usr/bin/env -i {shlex.join(env)} {shlex.join(self.argv)}"
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-ec",
             "\n".join(lines)],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip


def q(text: str | Path) -> str:
    return shlex.quote(str(text))


def _system_folders() -> tuple[list[str], list[str]]:
    """What a process of this interpreter needs, bound read-only: the system, /dev and
    /proc, the interpreter and its environment, and this checkout (an editable install);
    and the top-level links among them (/lib -> usr/lib on a merged /usr), made again."""
    top = ["/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/dev", "/proc"]
    links = [p for p in top if Path(p).is_symlink()]
    wanted = [p for p in top if p not in links and Path(p).is_dir()]
    wanted += [str(Path(p).resolve()) for p in (sys.base_prefix, sys.prefix, ROOT, sys.executable)]
    wanted += [str(Path(sys.executable).resolve().parent)]
    folders: list[str] = []
    for path in sorted({p for p in wanted if Path(p).is_dir()}):
        if not any(path == f or path.startswith(f + "/") for f in folders):
            folders.append(path)
    return folders, links


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT, np6-sync, as this environment installed it."""
    script = BIN / "np6-sync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sync"]


def image_env() -> dict[str, str]:
    """The image's ENV (Dockerfile), its PATH pointing at this environment's scripts."""
    [block] = re.findall(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE, flags=re.MULTILINE)
    values = dict(re.findall(r"(\w+)=(\S+)", block))
    values["PATH"] = f"{BIN}:/usr/local/bin:/usr/bin:/bin"
    return values | {"HOME": "/home/np6"}  # the image's user's home (not writable)


def size(limit: str) -> str:
    """A Kubernetes quantity (64Mi, 2Gi) as tmpfs' size option."""
    number, unit = re.fullmatch(r"(\d+)([KMG]i)", limit).groups()  # type: ignore[union-attr]
    return f"{number}{unit[0].lower()}"


class Pushgateway(http.server.ThreadingHTTPServer):
    """A Pushgateway stand-in on loopback: it records what is pushed."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.pushes.append((self.path, body.decode()))
                self.send_response(200)
                self.end_headers()

            do_POST = do_PUT

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    server = Pushgateway()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def np6() -> Iterator[Emulator]:
    with Emulator(API_KEY, segments=[SEGMENT]) as server:
        yield server


def owned_folder(path: Path, uid: int = 10001) -> Path:
    """A volume the pod's user can write (what fsGroup or the image's chown gives)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    return path


def readable_folder(path: Path, files: dict[str, str | bytes]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    for name, content in files.items():
        target = path / name
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        target.chmod(0o644)
    return path


def newsletter(emails: list[str]) -> str:
    """A `;` export with one rejected row (no email)."""
    lines = ["email;name", *(f"  {e.upper()} ;someone" for e in emails), ";nobody"]
    return "\n".join(lines) + "\n"


def addresses(start: int, stop: int) -> list[str]:
    return [f"reader{n}@example.fr" for n in range(start, stop)]


@dataclass
class Pod:
    """A CronJob's pod as the kubelet would start it, from the manifest's own fields."""

    manifest: Path
    secrets: dict[str, dict[str, str]]
    claims: dict[str, Path]
    extra_env: dict[str, str]  # the test's endpoints (NP6, S3), which a cluster has by DNS
    pushgateway: str

    def container(self, host: Path) -> Container:
        manifests = documents(self.manifest)
        pod = pod_of(cronjob_of(self.manifest))
        [spec] = pod["containers"]
        security = pod.get("securityContext", {})
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted = []
        for mount in spec["volumeMounts"]:
            volume = volumes[mount["name"]]
            read_only = bool(mount.get("readOnly"))
            if "configMap" in volume:
                data = manifests[f"ConfigMap/{volume['configMap']['name']}"]["data"]
                source: Path | None = readable_folder(host / mount["name"], data)
                read_only = True  # a configMap volume is always read-only
            elif "persistentVolumeClaim" in volume:
                source = self.claims[volume["persistentVolumeClaim"]["claimName"]]
            else:
                source = None  # an emptyDir
            limit = volume.get("emptyDir", {}).get("sizeLimit")
            mounted.append(Volume(mount["mountPath"], source, read_only, size(limit or "64Mi")))
        env = image_env()
        for var in spec.get("envFrom", []):
            env |= self.secrets[var["secretRef"]["name"]]
        for var in spec.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            env[var["name"]] = self.secrets[ref["name"]][ref["key"]] if ref else var["value"]
        # The cluster's Pushgateway is this loopback stand-in; nothing else is changed.
        args = [re.sub(r"^https?://pushgateway\.[^/]*", self.pushgateway, a) for a in spec["args"]]
        user = spec.get("securityContext", {}).get("runAsUser", security.get("runAsUser"))
        group = security.get("runAsGroup", user)
        return Container(
            argv=entrypoint() + args,
            env=env | self.extra_env,
            volumes=mounted,
            user=user,
            groups=[group, *([security["fsGroup"]] if "fsGroup" in security else [])],
            read_only_root=spec["securityContext"]["readOnlyRootFilesystem"],
        )


@needs_sandbox
def test_the_sandbox_is_read_only_but_for_the_writable_volumes(tmp_path: Path) -> None:
    """The sandbox itself: what the tests below rely on to mean "as the pod runs it"."""
    state = owned_folder(tmp_path / "state")
    jobs = readable_folder(tmp_path / "jobs", {"job.yaml": "x"})
    probe = 'for d in / /jobs /state /tmp; do touch "$d/w" 2>/dev/null && echo "$d"; done; id -u'
    container = Container(
        ["/bin/sh", "-c", probe],
        {"PATH": "/usr/bin:/bin"},
        [Volume("/jobs", jobs, read_only=True), Volume("/state", state), Volume(TMP, None)],
    )
    result = container.run(tmp_path / "root")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/state", TMP, "10001"]


def s3_names(s3: S3Server, bucket: str) -> set[str]:
    s3.fs.invalidate_cache()
    return {p.split("/", 1)[1] for p in s3.fs.find(bucket)}


def rejects_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(data.decode().splitlines()))


@needs_sandbox
@pytest.mark.parametrize("path", CRONJOBS, ids=[p.name for p in CRONJOBS])
def test_the_cronjob_runs_as_its_manifest_runs_it(
    path: Path,
    tmp_path: Path,
    np6: Emulator,
    pushgateway: Pushgateway,
    request: pytest.FixtureRequest,
) -> None:
    """Two scheduled runs of the manifest's pod: a first load, then a changed export; a row
    without email is rejected each time, and its rejects file lands where it can be written
    (the state's volume, or beside the state on S3), never on the read-only /jobs."""
    job = yaml.safe_load(
        next(
            d
            for m in documents(path).values()
            if m["kind"] == "ConfigMap"
            for n, d in m["data"].items()
            if n.endswith(".yaml") and "segment_id" in d
        )
    )
    remote = job["state"]["path"].startswith("s3://")
    extra_env = {"NP6_BASE_URL": np6.url}
    claims = {"np6-state": owned_folder(tmp_path / "claims" / "state")}
    s3: S3Server | None = None
    if remote:
        s3 = request.getfixturevalue("s3_server")
        extra_env |= {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
        for url in (job["source"]["path"], job["state"]["path"]):
            bucket = url.removeprefix("s3://").split("/")[0]
            if s3.fs.exists(bucket):
                s3.fs.rm(bucket, recursive=True)
            s3.fs.mkdir(bucket)
    pod = Pod(
        path,
        secrets={"np6": {"api-key": API_KEY}, "np6-aws": FAKE_AWS},
        claims=claims,
        extra_env=extra_env,
        pushgateway=pushgateway.url,
    )

    def export(emails: list[str]) -> None:
        source = job["source"]["path"]
        if s3 is not None:
            s3.fs.pipe_file(source, newsletter(emails).encode())
        else:
            name = Path(source).name
            claims["exports"] = readable_folder(tmp_path / "claims" / "exports", {})
            (claims["exports"] / name).write_text(newsletter(emails))
            (claims["exports"] / name).chmod(0o644)

    for run, emails in enumerate([addresses(0, 40), addresses(2, 41)]):
        export(emails)
        started = time.monotonic()
        result = pod.container(tmp_path / f"pod{run}").run(tmp_path / f"root{run}")
        took = time.monotonic() - started
        assert result.returncode == 0, result.stderr[-3000:]
        print(f"{path.name} run {run}: exit {result.returncode} in {took:.2f} s")
        assert np6.members(SEGMENT) == set(emails)  # stripped and lowercased
        # --log-format json: every stderr line of the run is one JSON object.
        assert all(line.startswith("{") for line in result.stderr.splitlines()), result.stderr
        if s3 is not None:
            bucket, key = job["state"]["path"].removeprefix("s3://").split("/", 1)
            rejects = f"{bucket}/{job['name']}.rejects.csv"
            assert key in s3_names(s3, bucket)
            rows = rejects_rows(s3.fs.cat_file(rejects))
        else:
            state = Path(job["state"]["path"])
            assert state.parent == Path("/state")
            assert (claims["np6-state"] / state.name).is_file()
            rows = rejects_rows((claims["np6-state"] / f"{job['name']}.rejects.csv").read_bytes())
        # The row without email, numbered as a spreadsheet counts (the header is row 1).
        [rejected] = rows
        assert rejected["row"] == str(len(emails) + 2) and rejected["email"] == ""
        assert "email" in rejected["reason"]
        [(where, pushed)] = [p for p in pushgateway.pushes if p[0].startswith("/metrics/job/")]
        assert job["name"] in where and "np6sync_last_run_timestamp_seconds" in pushed
        pushgateway.pushes.clear()


# --- the container: its command, parsed, then run as the image runs it ------------------


def docker_run_command() -> list[str]:
    """The `docker run` words of examples/docker/run.sh (continuations joined)."""
    text = DOCKER_RUN.read_text().replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if "docker run" in ln and not ln.startswith("#")]
    words = shlex.split(line, comments=True)
    return words[words.index("docker") :]


def docker_parser() -> argparse.ArgumentParser:
    """The docker run options the example uses; any other makes the test fail."""
    parser = argparse.ArgumentParser(prog="docker run", exit_on_error=False)
    parser.add_argument("--rm", action="store_true")
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--tmpfs", action="append", default=[])
    parser.add_argument("-e", "--env", action="append", default=[])
    parser.add_argument("-v", "--volume", action="append", default=[])
    parser.add_argument("image")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def test_the_docker_run_command_parses_and_uses_the_images_mount_points() -> None:
    # Not run with docker (no engine here): its options are parsed, and its np6-sync
    # arguments by np6-sync's own parser; the test below runs it as the image would.
    words = docker_run_command()
    assert words[:2] == ["docker", "run"]
    options = docker_parser().parse_args(words[2:])
    assert options.read_only and options.tmpfs == [TMP]
    volumes = dict(v.split(":")[:2][::-1] for v in options.volume)
    assert set(volumes) == MOUNTS
    assert all(v.endswith(":ro") for v in options.volume if ":/state" not in v)
    assert options.env == ["NP6_API_KEY"]  # from the caller's environment, never a value
    args = parses(options.args)
    assert args.command == "run"
    # The image's /state gives the state, lock and rejects their one writable place.
    for job_path in args.jobs:
        host = Path(volumes["/jobs"].replace("$PWD", str(ROOT))) / Path(job_path).name
        job = load_job(host)
        assert job.state.path and job.state.path.startswith("/state/")
        assert job.source.path.startswith("/data/")


def test_the_docker_example_job_is_the_repositorys_example_job_in_the_images_paths() -> None:
    docker = yaml.safe_load((EXAMPLES / "docker" / "jobs" / "newsletter-fr.yaml").read_text())
    local = yaml.safe_load((ROOT / "jobs" / "newsletter-fr.yaml").read_text())
    assert docker["source"]["path"] == "/data/" + Path(local["source"]["path"]).name
    assert docker["state"] == {"path": f"/state/{local['name']}.parquet"}
    assert {k: v for k, v in docker.items() if k not in ("source", "state")} == {
        k: v for k, v in local.items() if k != "source"
    }
    assert docker["source"] | {"path": None} == local["source"] | {"path": None}


@needs_sandbox
def test_the_docker_run_command_runs_as_the_image_would(tmp_path: Path, np6: Emulator) -> None:
    """Run from the repository's root, as its comment says: the repository's job folder,
    settings and data read-only, a named volume for /state, a read-only root, /tmp a tmpfs."""
    options = docker_parser().parse_args(docker_run_command()[2:])
    assert options.image == "np6-sync"
    volumes = []
    for spec in options.volume:
        source, target, *mode = spec.split(":")
        if source.startswith("$PWD"):
            host = Path(source.replace("$PWD", str(ROOT)))
        else:  # a named volume: new, it takes the image's /state (owned by 10001)
            host = owned_folder(tmp_path / "volumes" / source)
        volumes.append(Volume(target, host, read_only=mode == ["ro"]))
    volumes += [Volume(path, None) for path in options.tmpfs]
    env = image_env() | {name: os.environ.get(name, API_KEY) for name in options.env}
    env |= {"NP6_API_KEY": API_KEY, "NP6_BASE_URL": np6.url}  # the test's NP6
    [user] = re.findall(r"^USER (\d+)$", DOCKERFILE, flags=re.MULTILINE)
    container = Container(
        entrypoint() + options.args, env, volumes, int(user), [int(user)], options.read_only
    )
    for run in range(2):
        started = time.monotonic()
        result = container.run(tmp_path / f"root{run}")
        took = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        print(f"docker run {run}: exit {result.returncode} in {took:.2f} s")
    expected = set()
    with (ROOT / "jobs" / "data" / "newsletter.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter=";"):
            if row["email"].strip():
                expected.add(f"{row['email'].strip().lower()}|{row['customer_id']}")
    assert np6.members(SEGMENT) == expected
    state = tmp_path / "volumes" / "np6-state"
    assert (state / "newsletter-fr.parquet").is_file()
    [rejected] = rejects_rows((state / "newsletter-fr.rejects.csv").read_bytes())
    assert rejected["email"] == ""


# --- the GitHub Actions workflow -------------------------------------------------------


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


def test_the_workflow_matches_githubs_schema(tmp_path: Path) -> None:
    # check-jsonschema (test extra) carries GitHub's workflow schema: checked offline.
    checker = BIN / "check-jsonschema"
    command = [str(checker), "--builtin-schema", "vendor.github-workflows"]
    path = EXAMPLES / "github-actions" / "np6-sync.yml"
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and it does refuse a mistake: a job without runs-on.
    wrong = tmp_path / path.name
    wrong.write_text(path.read_text().replace("runs-on:", "run-on:"))
    result = subprocess.run([*command, str(wrong)], capture_output=True, text=True, check=False)
    assert result.returncode != 0


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


def test_the_workflows_plans_never_queue_behind_or_before_the_sync() -> None:
    jobs = workflow()["jobs"]
    groups = {name: job["concurrency"]["group"] for name, job in jobs.items()}
    assert groups["plan"] != groups["run"]
    assert "github.event.pull_request.number" in groups["plan"]  # one per pull request
    assert "${{" not in groups["run"]  # one sync at a time, whatever started it
    assert jobs["run"]["concurrency"]["cancel-in-progress"] is False  # never cut mid-sync


def test_the_workflow_gives_the_key_only_to_the_step_that_sends() -> None:
    secret = "${{ secrets.NP6_API_KEY }}"  # noqa: S105  (the expression, not a key)
    holders = []
    for name, job in workflow()["jobs"].items():
        assert "NP6_API_KEY" not in job.get("env", {}), name
        for step in job["steps"]:
            if "NP6_API_KEY" in step.get("env", {}):
                assert step["env"]["NP6_API_KEY"] == secret
                holders.append((name, [a[0] for a in np6_sync_commands(step["run"])]))
    assert holders == [("run", ["run"])]


def test_the_workflows_s3_readers_install_the_extra_and_get_credentials() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "s3" in extras["optional-dependencies"]
    for name, job in workflow()["jobs"].items():
        runs = [step.get("run", "") for step in job["steps"]]
        installs = [shlex.split(r) for r in runs if r.startswith("pip install")]
        assert installs == [["pip", "install", ".[s3]"]], name  # state.path: s3://...
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(job["env"])
        assert all(v.startswith("${{ secrets.") for k, v in job["env"].items() if "KEY" in k)


@pytest.fixture
def checkout(tmp_path: Path, s3_server: S3Server) -> Path:  # noqa: F811
    """A clone as the workflow checks it out: jobs/ whose state is on S3."""
    bucket = "np6-sync-workflow"
    if s3_server.fs.exists(bucket):
        s3_server.fs.rm(bucket, recursive=True)
    s3_server.fs.mkdir(bucket)
    folder = tmp_path / "checkout"
    (folder / "jobs").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "newsletter.csv").write_text(newsletter(addresses(0, 30)))
    job = {
        "name": "newsletter-fr",
        "segment_id": SEGMENT,
        "source": {"path": "../data/newsletter.csv", "delimiter": ";"},
        "targets": {"identify_by": "unicity", "columns": ["email"]},
        "state": {"path": f"s3://{bucket}/newsletter-fr.parquet"},
    }
    job["targets"]["transforms"] = {"email": ["strip", "lower"]}
    (folder / "jobs" / "newsletter-fr.yaml").write_text(yaml.safe_dump(job))
    return folder


def test_the_workflows_steps_run_with_their_own_environment(
    checkout: Path,
    s3_server: S3Server,  # noqa: F811
    np6: Emulator,
) -> None:
    """The plan job's np6-sync steps, the sync's, then a plan again, each in bash with the
    env the workflow gives it (secrets replaced by the test's), against S3 and NP6 stand-ins.
    The setup steps (checkout, setup-python, pip install) are the test environment's own."""
    secrets = {"NP6_API_KEY": API_KEY, **FAKE_AWS}
    base = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(checkout),
        "NP6_BASE_URL": np6.url,  # were a step to call NP6, the emulator would see it
        "AWS_ENDPOINT_URL": s3_server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "GITHUB_STEP_SUMMARY": str(checkout / "step-summary.md"),
    }

    def resolve(env: dict[str, str]) -> dict[str, str]:
        found = {k: re.sub(r"\$\{\{ secrets\.(\w+) \}\}", lambda m: secrets[m[1]], v)
                 for k, v in env.items()}  # fmt: skip
        return {k: str(v) for k, v in found.items()}

    def steps(name: str) -> None:
        job = workflow()["jobs"][name]
        for step in job["steps"]:
            if "np6-sync" not in step.get("run", ""):
                continue
            env = base | resolve(job.get("env", {})) | resolve(step.get("env", {}))
            result = subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert result.returncode == 0, f"{name}: {step['run']}\n{result.stdout}{result.stderr}"

    steps("plan")
    assert np6.calls == [] and np6.members(SEGMENT) == set()  # planned without the key
    assert "30" in (checkout / "plan.md").read_text()
    steps("run")
    assert np6.members(SEGMENT) == set(addresses(0, 30))
    assert (checkout / "report.json").is_file()
    np6.reset_calls()
    steps("plan")
    assert np6.calls == []
