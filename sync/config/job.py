"""The job file's models: ``load_job`` validates a job once, at load, and reports every
problem at once with its YAML path (``targets.columns[1]: ...``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sync.config.files import Model, format_validation_error, read_yaml
from sync.errors import ConfigError
from sync.read import formats
from sync.read.formats import url_scheme

# The schemes a state may live on: each has its home in sync/state/store.py (_HOMES),
# which holds to this list (tests/test_state_edges.py).
STATE_SCHEMES = ("s3",)

Transform = Literal["strip", "lower", "upper", "digits", "nfkc", "remove_zero_width"]
# URL schemes a source may use (read through fsspec; see sync/remote.py), and the state.
SOURCE_SCHEMES = ("s3", "gs", "az", "http", "https")


class SourceConfig(Model):
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


class TargetsConfig(Model):
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


def _unwritable(path: str | None) -> str | None:
    """The scheme of ``path`` when np6-sync cannot write there (not local, not S3)."""
    scheme = url_scheme(path) if path is not None else None
    return None if scheme is None or scheme in STATE_SCHEMES else scheme


class StateConfig(Model):
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _writable_scheme(cls, value: str | None) -> str | None:
        scheme = _unwritable(value)
        if scheme is None:
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


class RejectsConfig(Model):
    # The rejected rows' CSV file: a local path (relative to the job file) or an s3:// URL.
    # Default: ``<name>.rejects.csv`` beside the state, on S3 too when the state is there.
    path: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("path")
    @classmethod
    def _writable_scheme(cls, value: str | None) -> str | None:
        scheme = _unwritable(value)
        if scheme is None:
            return value
        raise ValueError(
            f"rejects on {scheme}:// are not supported: use a local path or an s3:// URL"
        )


class SyncConfig(Model):
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


class NormalizationConfig(Model):
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


class Job(Model):
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
