"""A job's source, read as its job file describes it, and the keys built from it (the
job's glue over sync.read, the readers, and sync.core.keys)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sync.config import Job
from sync.core.keys import KeySet, collect_keys, distinct
from sync.read.sources import SourceSpec, SourceTable, read_source

if TYPE_CHECKING:
    import pyarrow as pa


def source_columns(job: Job) -> list[str]:
    """The key columns, then those the condition names."""
    names = list(job.targets.columns)
    if job.source.where is not None:
        from sync.read.where import columns_of

        names += [c for c in columns_of(job.source.where) if c not in names]
    return names


def local_size(job: Job) -> int:
    """The size of the job's own local source file; -1 for a URL, or a file that cannot be
    looked at (its reader will say why)."""
    if job.source_url is not None:
        return -1
    try:
        return job.source_path.stat().st_size
    except OSError:
        return -1


def read_job_source(job: Job, columns: list[str] | None = None) -> SourceTable:
    """The key columns (and the condition's, or ``columns``) of the job's source, a local
    file or a URL."""
    columns = source_columns(job) if columns is None else columns
    if job.source_url is None:
        return read_source(source_spec(job), columns)
    from sync.read.remote import read_remote_source  # fsspec: only for remote sources

    return read_remote_source(job.source_url, source_spec(job), columns)


def read_downloaded(local: Path, job: Job) -> SourceTable:
    """The job's URL source, from the copy downloaded to ``local``."""
    from sync.read.remote import read_downloaded as read  # fsspec: only for remote sources

    assert job.source_url is not None, "only a URL source is downloaded"
    return read(local, job.source_url, source_spec(job), source_columns(job))


def collect_job_keys(job: Job, source: SourceTable) -> KeySet:
    """Every valid key of the rows the job's condition keeps, duplicates included."""
    keep = None
    if job.source.where is not None:
        from sync.read.where import keep_mask

        keep = keep_mask(job.source.where, source.table, source.path)
    return collect_keys(source.table, job.targets, source.first_row, keep)


def load_keys(job: Job) -> KeySet:
    return distinct(collect_job_keys(job, read_job_source(job)))


def source_spec(job: Job) -> SourceSpec:
    return SourceSpec(
        path=job.source_path,
        format=job.source_format,
        delimiter=job.source_delimiter,
        encoding=job.source.encoding,
    )


def source_keys(job: Job) -> pa.Array:
    """The distinct keys of the job's source, read whole (for the read-back: sync.verify)."""
    return load_keys(job).keys
