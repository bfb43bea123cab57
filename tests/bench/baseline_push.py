"""Baseline for target 2: a plain sequential push, one requests.Session, one PUT after another.

Builds the same keys np6-sync builds (lower(strip(email)) | strip(customer_id)) from a CSV
and PUTs them 50 at a time to ``BASE_URL/segments/SEGMENT/targets``.

    NP6_API_KEY=... python tests/bench/baseline_push.py BASE_URL SEGMENT SOURCE.csv
"""

from __future__ import annotations

import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import requests


def main(base_url: str, segment: str, source: str) -> None:
    columns = ["email", "customer_id"]
    table = pacsv.read_csv(
        source,
        convert_options=pacsv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in columns}
        ),
    )
    email = pc.utf8_lower(pc.utf8_trim_whitespace(table["email"]))
    keys = pc.binary_join_element_wise(email, pc.utf8_trim_whitespace(table["customer_id"]), "|")
    keys = pc.unique(keys).to_pylist()
    session = requests.Session()
    session.headers.update({"X-Key": os.environ["NP6_API_KEY"], "Content-Type": "application/json"})
    url = f"{base_url}/segments/{segment}/targets"
    puts = 0
    for offset in range(0, len(keys), 50):
        answer = session.put(url, data=json.dumps(keys[offset : offset + 50]))
        answer.raise_for_status()
        puts += 1
    print(f"keys {len(keys)} puts {puts}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
