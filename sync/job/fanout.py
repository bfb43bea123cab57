"""One export, many segments: a job file that fans one source out into several segments.

A fan-out job lists ``segments`` (each with its name, segment id and condition), or maps
the values of one column to segment ids (``segment_by``). Each segment becomes an
ordinary Job whose ``source.where`` is its condition (and the job's, when it has one),
so each has its own state, lock, rejects, plan, safeguards and report line; the file is
read once for all of them (``SharedSource``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sync.config import (
    Job,
    NormalizationConfig,
    SourceConfig,
    SyncConfig,
    TargetsConfig,
    format_validation_error,
    read_yaml,
)
from sync.config.files import Model
from sync.errors import ConfigError, RefusedError

if TYPE_CHECKING:
    from sync.read.sources import SourceTable


def read_job_source(job: Job, columns: list[str] | None = None) -> SourceTable:
    """The job's source; the readers (pyarrow) are imported only when a file is read, so a
    run that finds its file unchanged starts without them."""
    from sync.job.source import read_job_source as read

    return read(job, columns)


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Name = Annotated[str, Field(pattern=_NAME, max_length=100)]
SegmentId = Annotated[int, Field(gt=0, strict=True)]


class SegmentSpec(Model):
    name: Name
    segment_id: SegmentId
    where: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("where")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        from sync.read.where import check

        return None if value is None else check(value)


class SegmentBy(Model):
    column: Annotated[str, Field(min_length=1)]
    segments: Annotated[dict[str, SegmentId], Field(min_length=1)]  # value -> segment id
    # A row whose value is not in the map: left out of every segment, or the whole job
    # refused (exit 3) before anything is sent.
    unmapped: Literal["ignore", "refuse"] = "ignore"


class FanOutJob(Model):
    name: Name
    source: SourceConfig
    targets: TargetsConfig
    sync: SyncConfig = SyncConfig()
    normalization: NormalizationConfig | None = None
    segments: Annotated[list[SegmentSpec], Field(min_length=1)] | None = None
    segment_by: SegmentBy | None = None
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _one_way(self) -> FanOutJob:
        if (self.segments is None) == (self.segment_by is None):
            raise ValueError("give either segments or segment_by, not both")
        specs = self.specs()
        for what, values in (
            ("name", [s.name for s in specs]),
            ("segment id", [s.segment_id for s in specs]),
        ):
            twice = sorted({str(v) for i, v in enumerate(values) if v in values[:i]})
            if twice:
                raise ValueError(f"each segment needs its own {what}: {twice} used twice")
        return self

    def specs(self) -> list[SegmentSpec]:
        if self.segments is not None:
            return list(self.segments)
        assert self.segment_by is not None
        column = self.segment_by.column
        specs = []
        for value, segment_id in self.segment_by.segments.items():
            name = f"{self.name}.{value}"
            if not re.match(_NAME, name) or len(name) > 100:
                raise ValueError(
                    f"segment_by.segments: the value {value!r} cannot name a segment "
                    f"({name!r}): use letters, digits, '.', '_' or '-'"
                )
            specs.append(
                SegmentSpec(name=name, segment_id=segment_id, where=_equals(column, value))
            )
        return specs

    def jobs(self) -> list[Job]:
        return [self._job(spec) for spec in self.specs()]

    def _job(self, spec: SegmentSpec) -> Job:
        conditions = [c for c in (self.source.where, spec.where) if c is not None]
        where = " AND ".join(f"({c})" for c in conditions) if conditions else None
        return Job.model_validate(
            {
                "name": spec.name,
                "segment_id": spec.segment_id,
                "source": {**self.source.model_dump(exclude_none=True), "where": where},
                "targets": self.targets.model_dump(),
                "sync": self.sync.model_dump(),
                "normalization": self.normalization and self.normalization.model_dump(),
                "base_dir": self.base_dir,
            }
        )


def _equals(column: str, value: str) -> str:
    """``"column" = 'value'`` in SQL, whatever quotes either holds."""
    quoted_column = column.replace('"', '""')
    quoted_value = value.replace("'", "''")
    return f"\"{quoted_column}\" = '{quoted_value}'"


def is_fan_out(data: dict[str, Any]) -> bool:
    return "segments" in data or "segment_by" in data


def load_job_file(path: str | Path) -> tuple[list[Job], SharedSource | None]:
    """The job file's jobs (one, or one per segment), and the one read a fan-out's
    segments share (None: a job reads its own file)."""
    path = Path(path)
    return jobs_from(read_yaml(path), path.resolve().parent, str(path))


def jobs_from(
    data: dict[str, Any], base_dir: Path, where: str
) -> tuple[list[Job], SharedSource | None]:
    """A job file's content as jobs; ConfigError (naming ``where``) lists its problems."""
    try:
        if not is_fan_out(data):
            return [Job.model_validate({**data, "base_dir": base_dir})], None
        fan = FanOutJob.model_validate({**data, "base_dir": base_dir})
        jobs = fan.jobs()
    except ValidationError as exc:
        raise ConfigError(where, format_validation_error(exc)) from None
    return jobs, SharedSource(fan, jobs)


class SharedSource:
    """A fan-out's source, or a DataFrame handed to the API (``frame``), read once, by the
    first segment that needs it, with every segment's columns; a failure to read is every
    segment's failure."""

    def __init__(
        self,
        fan: FanOutJob | None,
        jobs: list[Job],
        read: Callable[[Job, list[str]], SourceTable] = read_job_source,
        *,
        frame: bool = False,
    ) -> None:
        self.fan = fan
        self.frame = frame
        from sync.job.source import source_columns

        self.columns = list(dict.fromkeys(c for job in jobs for c in source_columns(job)))
        self._read = read
        self._table: SourceTable | None = None
        self._error: Exception | None = None
        self.unmapped = 0

    def __call__(self, job: Job) -> SourceTable:
        if self._error is not None:
            raise self._error
        if self._table is None:
            try:
                table = self._read(job, self.columns)
                self._check_unmapped(table)
            except Exception as error:  # kept as it is, raised again: every segment's failure
                self._error = error
                raise

            self._table = table
        return self._table

    def release(self) -> None:
        """Let the columns go once every segment has its keys."""
        self._table = None

    def _check_unmapped(self, source: SourceTable) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        by = self.fan.segment_by if self.fan is not None else None
        if by is None:
            return
        assert self.fan is not None
        values = source.table.column(by.column)
        # A missing value is outside too: is_in answers false for it, never null.
        mapped = pc.is_in(values, value_set=pa.array(list(by.segments), values.type))
        outside = pc.invert(mapped)
        if self.fan.source.where is not None:  # only the rows the job keeps count
            from sync.read.where import keep_mask

            kept = keep_mask(self.fan.source.where, source.table, source.path)
            outside = pc.and_(outside, kept)
        self.unmapped = pc.sum(outside.cast(pa.int64())).as_py() or 0
        if self.unmapped and by.unmapped == "refuse":
            # The value itself is not named: it is the list's data, and may be personal.
            raise RefusedError(
                f"{source.path}: {self.unmapped:,} row(s) hold a {by.column} value that "
                "segment_by.segments does not map; map it, or set segment_by.unmapped: ignore"
            )
