"""A job's source, read as its job file describes it, and the keys built from it."""

from __future__ import annotations

from sync.config import Job
from sync.core.keys import KeySet, build_keys
from sync.read.sources import SourceSpec, SourceTable, read_source


def read_job_source(job: Job) -> SourceTable:
    """The key columns of the job's source, a local file or a URL."""
    if job.source_url is None:
        return read_source(source_spec(job), job.targets.columns)
    from sync.read.remote import read_remote_source  # fsspec: only for remote sources

    return read_remote_source(job.source_url, source_spec(job), job.targets.columns)


def load_keys(job: Job) -> KeySet:
    source = read_job_source(job)
    return build_keys(source.table, job.targets, source.first_row)


def source_spec(job: Job) -> SourceSpec:
    return SourceSpec(
        path=job.source_path,
        format=job.source_format,
        delimiter=job.source_delimiter,
        encoding=job.source.encoding,
    )
