"""Job and settings models.

``load_job`` and ``load_settings`` validate a YAML file once, at load, and report
every problem at once with its YAML path (``targets.columns[1]: ...``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sync.errors import ConfigError
from sync.read import formats
from sync.read.formats import url_scheme

# The schemes a state may live on: each has its home in sync/state/store.py (_HOMES),
# which holds to this list (tests/test_state_edges.py).
STATE_SCHEMES = ("s3",)

Transform = Literal["strip", "lower", "upper", "digits", "nfkc", "remove_zero_width"]
# URL schemes a source may use (read through fsspec; see sync/remote.py), and the state.
SOURCE_SCHEMES = ("s3", "gs", "az", "http", "https")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    path: Annotated[str, Field(min_length=1)]
    format: Annotated[Literal["csv", "parquet"] | None, Field(validate_default=True)] = None
    delimiter: str | None = None  # default: a tab for .tsv files, else a comma
    encoding: str = "utf-8"
    # Rows chosen by a condition over the file's columns (see sync/read/where.py).
    where: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("where")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        from sync.read.where import check  # polars: only for a job with a condition

        return None if value is None else check(value)

    @field_validator("path")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = url_scheme(value)
        if scheme is not None and scheme not in SOURCE_SCHEMES:
            raise ValueError(
                f"{scheme}:// is not supported: use a local path or an s3://, gs://, az://, "
                "https:// or http:// URL"
            )
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and value != "auto" and len(value) != 1:
            raise ValueError("must be one character (for example ',' ';' '|' or a tab), or 'auto'")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("format")
    @classmethod
    def _format_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = info.data.get("path")
        if value is None and path is not None and infer_format(path) is None:
            raise ValueError(
                f"cannot tell the format of {path!r} from its name; "
                "set source.format to csv or parquet"
            )
        return value


class TargetsConfig(_Model):
    identify_by: Literal["unicity", "id"] = "unicity"
    columns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    separator: str = ""
    transforms: dict[str, list[Transform]] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        seen = [c for i, c in enumerate(value) if c in value[:i]]
        if seen:
            raise ValueError(f"columns are named more than once: {sorted(set(seen))}")
        return value

    # A transforms entry that names no key column is refused once the header is read
    # (sync.core.keys.check_transforms): a column mistyped in targets.columns but spelt
    # right in transforms is the header's to name, with its closest names.
    def unknown_transforms(self) -> list[str]:
        return [c for c in self.transforms if c not in self.columns]

    def transforms_for(self, column: str) -> list[Transform]:
        return self.transforms.get(column, ["strip"])

    def definition(self) -> dict[str, Any]:
        """What makes two keys comparable: a state built with another definition is foreign."""
        return {
            "identify_by": self.identify_by,
            "columns": list(self.columns),
            "separator": self.separator,
            "transforms": {c: list(self.transforms_for(c)) for c in self.columns},
        }


class StateConfig(_Model):
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _writable_scheme(cls, value: str | None) -> str | None:
        scheme = url_scheme(value) if value is not None else None
        if scheme is None or scheme in STATE_SCHEMES:
            return value
        if scheme in ("http", "https"):
            raise ValueError(f"{scheme}:// is read-only: put the state on s3:// or a local path")
        if scheme in SOURCE_SCHEMES:
            raise ValueError(
                f"state on {scheme}:// is not supported yet: np6-sync locks a remote state with "
                "conditional writes, implemented for s3:// only (a source may be on "
                f"{scheme}://); put the state on s3:// or a local path"
            )
        raise ValueError(f"{scheme}:// is not supported: use a local path or an s3:// URL")


class RejectsConfig(_Model):
    # The rejected rows' CSV file: a local path (relative to the job file) or an s3:// URL.
    # Default: ``<name>.rejects.csv`` beside the state, on S3 too when the state is there.
    path: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("path")
    @classmethod
    def _writable_scheme(cls, value: str | None) -> str | None:
        scheme = url_scheme(value) if value is not None else None
        if scheme is None or scheme in STATE_SCHEMES:
            return value
        raise ValueError(
            f"rejects on {scheme}:// are not supported: use a local path or an s3:// URL"
        )


class SyncConfig(_Model):
    mode: Literal["auto", "append", "reload"] = "auto"
    chunk_size: Annotated[int, Field(ge=1, le=50)] = 50
    max_removed_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    min_rows: Annotated[int, Field(ge=0)] = 1
    max_rejected_ratio: Annotated[float, Field(ge=0, le=1)] = 0.05
    # How targets leave the segment when mode is auto (docs/removals.md, the cost model).
    removals: Literal["auto", "reload", "per_target", "defer"] = "auto"
    # auto removes one by one (the segment never incomplete) unless that costs more than
    # this many times the requests of a reload (docs/removals.md); 1: the cheaper way.
    reload_cost_factor: Annotated[float, Field(ge=1)] = 5.0
    defer_removals_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    defer_removals_days: Annotated[int, Field(ge=0)] = 7
    # Below this share of keys matching a contact, NP6 is not taking the targets: a
    # reload is refused before its clear, and adding stops (docs/np6.md).
    min_accepted_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5
    lookup_sample: Annotated[int, Field(ge=0, le=1000)] = 20  # keys looked up; 0: none
    # identify_by unicity: look contact ids up (GET /targets?unicity=) to remove targets
    # one by one; false for an account without that call (removals then reload).
    lookups: bool = True


class NormalizationConfig(_Model):
    fields: Annotated[dict[str, Annotated[list[str], Field(min_length=1)]], Field(min_length=1)]

    @field_validator("fields")
    @classmethod
    def _iso_codes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for field, countries in value.items():
            if not field.isdigit():
                raise ValueError(f"field id {field!r} must be a number")
            bad = [c for c in countries if not re.fullmatch(r"[A-Z]{3}", c)]
            if bad:
                raise ValueError(f"field {field}: {bad} are not ISO 3166-1 alpha-3 codes")
        return value


class Job(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)]
    segment_id: Annotated[int, Field(gt=0, strict=True)]
    source: SourceConfig
    targets: TargetsConfig
    state: StateConfig = StateConfig()
    rejects: RejectsConfig = RejectsConfig()
    sync: SyncConfig = SyncConfig()
    normalization: NormalizationConfig | None = None
    # Where the job file lives: relative paths are resolved against it. Not a YAML key.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _removals_need_ids(self) -> Job:
        by_id = self.targets.identify_by == "id"
        if self.sync.removals == "per_target" and not (by_id or self.sync.lookups):
            raise ValueError(
                "sync.removals: per_target needs targets.identify_by: id, or sync.lookups "
                "(NP6 removes single targets by their id)"
            )
        return self

    @property
    def source_path(self) -> Path:
        """The local source file (meaningless when ``source_url`` is set)."""
        return _resolve(self.base_dir, self.source.path)

    @property
    def source_url(self) -> str | None:
        """``source.path`` when it is a URL (s3://, gs://, az://, http(s)://), else None."""
        return self.source.path if url_scheme(self.source.path) else None

    @property
    def state_path(self) -> Path:
        """The local state file; with a remote state (``state_url``), the local place of
        the job's local-only outputs (rejects, verify listing): ``<job folder>/state/``."""
        if self.state.path is None or self.state_url is not None:
            return self.base_dir / "state" / f"{self.name}.parquet"
        return _resolve(self.base_dir, self.state.path)

    @property
    def state_url(self) -> str | None:
        """``state.path`` when it is a URL (s3:// only), else None."""
        path = self.state.path
        return path if path is not None and url_scheme(path) else None

    @property
    def rejects_url(self) -> str | None:
        """Where the rejected rows go when that is object storage: ``rejects.path`` when it
        is a URL; without it, ``<name>.rejects.csv`` beside a remote state. Else None."""
        if self.rejects.path is not None:
            return self.rejects.path if url_scheme(self.rejects.path) else None
        if self.state_url is not None:
            return f"{self.state_url.rsplit('/', 1)[0]}/{self.name}.rejects.csv"
        return None

    @property
    def rejects_path(self) -> Path:
        """The local rejects file (meaningless when ``rejects_url`` is set): ``rejects.path``,
        else ``<name>.rejects.csv`` beside the state."""
        if self.rejects.path is not None and not url_scheme(self.rejects.path):
            return _resolve(self.base_dir, self.rejects.path)
        return self.state_path.with_name(f"{self.name}.rejects.csv")

    @property
    def source_delimiter(self) -> str:
        if self.source.delimiter is not None:
            return self.source.delimiter
        return "\t" if ".tsv" in Path(self.source.path).name.lower() else ","

    @property
    def source_format(self) -> formats.Format:
        fmt = self.source.format or infer_format(self.source.path)
        assert fmt is not None  # checked by SourceConfig
        return fmt


class Timeouts(_Model):
    connect: Annotated[float, Field(gt=0)] = 5.0
    read: Annotated[float, Field(gt=0)] = 60.0
    # Until a request of the run is answered, NP6 is given up on after this many seconds
    # (a wrong base_url, DNS, a firewall); once it has answered, retries go on as set.
    first_contact: Annotated[float, Field(gt=0)] = 10.0


class RetryConfig(_Model):
    max_attempts: Annotated[int, Field(ge=1)] = 8
    initial_wait: Annotated[float, Field(ge=0)] = 0.5
    max_wait: Annotated[float, Field(ge=0)] = 60.0
    max_retry_after: Annotated[float, Field(ge=0)] = 300.0
    # No retry sleeps past this many seconds after the run started.
    deadline: Annotated[float, Field(gt=0)] = 3600.0


class Settings(_Model):
    # The key would travel in clear over plain http: only to loopback, unless this says so.
    # (Declared before base_url, whose check reads it.)
    allow_plain_http: bool = False
    base_url: str = "https://api-cm.np6.com"
    api_key_env: str = "NP6_API_KEY"
    timeouts: Timeouts = Timeouts()
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    max_requests_per_second: Annotated[float, Field(gt=0)] = 10.0
    retry: RetryConfig = RetryConfig()
    # Accept header sent with unicity values; older NP6 docs use
    # application/vnd.mperf.v8.unicity. None sends application/json.
    unicity_media_type: str | None = None
    # Whether the account matches unicity values whatever their case (not documented;
    # e-mail matching commonly does). True is the safe assumption: a leaving key equal
    # to a kept one but for case keeps their contact. `np6-sync check` tells which.
    unicity_folds_case: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL, for example https://api-cm.np6.com")
        url = urlsplit(value)
        plain = url.scheme.lower() == "http"
        if plain and not info.data.get("allow_plain_http") and not _loopback(url):
            raise ValueError(
                f"plain http to {url.hostname} would send the API key in clear: "
                "use https, or set allow_plain_http: true"
            )
        return value.rstrip("/")


def _loopback(url: SplitResult) -> bool:
    host = (url.hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def infer_format(path: str) -> formats.Format | None:
    if url_scheme(path):
        path = urlsplit(path).path  # a signed URL's query is not part of the name
    return formats.infer_format(path)


def _resolve(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def load_job(path: str | Path) -> Job:
    """Read and validate a job file; ConfigError lists every problem with its YAML path."""
    path = Path(path)
    data = read_yaml(path)
    try:
        return Job.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(str(path), format_validation_error(exc)) from None


def load_settings(path: str | Path | None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from the YAML file (or defaults), then NP6_BASE_URL from the environment."""
    environ = dict(os.environ) if environ is None else environ
    data = read_yaml(Path(path)) if path is not None else {}
    if environ.get("NP6_BASE_URL"):
        data = {**data, "base_url": environ["NP6_BASE_URL"]}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        if environ.get("NP6_BASE_URL"):  # the value came from the environment, not the file
            problems = [
                p.replace("base_url:", "base_url (from NP6_BASE_URL):", 1) for p in problems
            ]
        raise ConfigError(str(path or "settings"), problems) from None


def job_identity(path: str) -> tuple[str, int | None]:
    """A job file's name and segment id, read leniently, for the report of a run that
    failed before the file was loaded, or of a file that does not load: its name (else
    the file's), and its segment id when it has one."""
    name, segment_id = Path(path).stem, None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except Exception:  # any failure: the file's own name will do
        return name, segment_id
    if isinstance(data, dict):
        if isinstance(data.get("name"), str) and data["name"].strip():
            name = data["name"]
        if isinstance(data.get("segment_id"), int) and not isinstance(data["segment_id"], bool):
            segment_id = data["segment_id"]
    return name, segment_id


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.__class__.__name__}"]) from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        # PyYAML parses nested blocks recursively: a hostile file exhausts Python's stack.
        raise ConfigError(str(path), ["not valid YAML: nested too deeply to read"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [f"{where}not valid YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"expected a mapping of keys, got {type(data).__name__}"])
    return data


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``targets.columns[1]: message``."""
    problems = []
    for error in exc.errors():
        loc = ""
        for part in error["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part in ("function-after", "function-before"):
                continue
            else:
                loc += f".{part}" if loc else str(part)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        problems.append(f"{loc or '(top level)'}: {message}")
    return problems
