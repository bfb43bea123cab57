"""Baseline for target 3: the least a no-change check can do with pyarrow.

Reads the two key columns of a CSV as strings, strips/lowers the e-mail, strips the id,
joins them with "|", and checks every key against the keys stored in np6-sync's state
file (Parquet, column "key") with ``pc.is_in``; prints how many are new.

    python tests/bench/baseline_pyarrow.py SOURCE.csv STATE.parquet
"""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def main(source: str, state: str) -> None:
    columns = ["email", "customer_id"]
    table = pacsv.read_csv(
        source,
        convert_options=pacsv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in columns}
        ),
    )
    email = pc.utf8_lower(pc.utf8_trim_whitespace(table["email"]))
    customer_id = pc.utf8_trim_whitespace(table["customer_id"])
    keys = pc.binary_join_element_wise(email, customer_id, "|")
    stored = pq.read_table(state, columns=["key"])["key"].combine_chunks().cast(pa.string())
    new = pc.sum(pc.invert(pc.is_in(keys, value_set=stored))).as_py() or 0
    print(f"rows {table.num_rows} new {new}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
