"""Read the next piece while the caller works on this one.

Reading (decompressing, parsing) and folding both let go of the GIL: on two cores, a
reader thread a piece ahead makes a scan of the state a third faster and a fold of a
source a sixth (measured at ten million rows). One piece more is in memory meanwhile.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def read_ahead(items: Generator[T, None, None]) -> Iterator[T]:
    """``items``, each read on a thread of its own while the previous one is used."""
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="np6sync-read") as reader:
            coming = reader.submit(next, items, None)
            while (item := coming.result()) is not None:
                coming = reader.submit(next, items, None)
                yield item
    finally:
        items.close()  # a caller that stops early closes the file at once
