"""Leaving keys that a kept key may still name: equal to it but for case.

An account that matches unicity values whatever their case (e-mail matching commonly
does) resolves ``U7@Example.org`` and ``u7@example.org`` to one contact: when the first
stays in the file and the second leaves, removing the second's contact would take out
of the segment a target the file keeps. Those pairs are found here, locally and without
a request, so that only the kept keys that collide are looked up.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from sync.core.keys import KEY_TYPE, concat

TWINS_SCHEMA = pa.schema([("key", KEY_TYPE), ("twin", KEY_TYPE)])
_SLICE = 1 << 20  # kept keys lowered at a time: the memory of a slice, not of the list


def no_twins() -> pa.Table:
    return TWINS_SCHEMA.empty_table()


def case_twins(
    leaving: pa.Array | pa.ChunkedArray, kept: Iterable[pa.Array | pa.ChunkedArray]
) -> pa.Table:
    """Each leaving key with each kept key equal to it under case folding (``lower``),
    as (key, twin) rows. ``kept``: the kept keys, in parts."""
    if not len(leaving):
        return no_twins()
    folded_leaving = pc.utf8_lower(leaving)
    found: list[pa.Array | pa.ChunkedArray] = []
    for part in kept:
        for offset in range(0, len(part), _SLICE):
            chunk = part.slice(offset, _SLICE)
            hits = pc.is_in(pc.utf8_lower(chunk), value_set=folded_leaving)
            if pc.any(hits).as_py():
                found.append(pc.filter(chunk, hits))
    if not found:
        return no_twins()
    by_folded: dict[str, list[str]] = {}
    for twin in pc.unique(concat(*found)).to_pylist():
        by_folded.setdefault(twin.lower(), []).append(twin)
    pairs = [
        (key, twin)
        for key in leaving.to_pylist()
        for twin in by_folded.get(key.lower(), ())
        if twin != key
    ]
    keys, twins = zip(*pairs, strict=True) if pairs else ((), ())
    return pa.Table.from_arrays(
        [pa.array(keys, KEY_TYPE), pa.array(twins, KEY_TYPE)], schema=TWINS_SCHEMA
    )
