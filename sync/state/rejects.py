"""The rows a job rejected, in its rejects file: beside the state (local or remote), or
where ``rejects.path`` says. The file holds a list's rows: written private (0600)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv

from sync.config import Job
from sync.core.keys import KeySet
from sync.state.files import atomic_write


def write_rejects(job: Job, keyset: KeySet) -> str | None:
    """Rejected rows go to the job's rejects file (``rejects.path``, by default
    ``<name>.rejects.csv`` beside the state, remote or local); no rejects, no file."""
    url = job.rejects_url
    if url is not None:
        from sync.read.remote import display_url
        from sync.state.s3_objects import write_whole  # s3fs only for a job that uses S3

        data = None
        if keyset.rows_rejected:
            buffer = io.BytesIO()
            pacsv.write_csv(_one_chunk(keyset), buffer)
            data = buffer.getvalue()
        write_whole(url, data, "write the rejects file")
        return display_url(url) if data is not None else None
    path = job.rejects_path
    if not keyset.rows_rejected:
        path.unlink(missing_ok=True)
        return None
    with atomic_write(path) as f:
        pacsv.write_csv(_one_chunk(keyset), f)
    return str(path)


def _one_chunk(keyset: KeySet) -> pa.Table:
    """The rejected rows as one chunk: pyarrow before 17 writes the header line again
    for each chunk that follows an empty one (the first is always empty)."""
    return keyset.rejected.combine_chunks()
