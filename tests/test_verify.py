"""The read-back's figures and words, one by one: id mode against the source and the
state (sync/verify/listing.py), unicity mode by the ids the state knows
(sync/verify/ids.py)."""

from __future__ import annotations

import pytest

from sync.verify.ids import IdComparison


@pytest.mark.parametrize(
    ("unmatched", "unknown", "extra"), [(0, 0, 0), (3, 1, 2), (2, 2, 0), (1, 5, 0)]
)
def test_each_key_of_unknown_id_may_explain_one_unmatched_id(
    unmatched: int, unknown: int, extra: int
) -> None:
    comparison = IdComparison(segment=9, keys=10, missing=0, unknown=unknown, unmatched=unmatched)
    assert comparison.extra_at_least == extra
    assert comparison.equal is (extra == 0)


def test_the_share_checked_must_reach_nine_in_ten() -> None:
    def compared(keys: int, unknown: int) -> IdComparison:
        return IdComparison(segment=keys, keys=keys, missing=0, unknown=unknown, unmatched=0)

    assert compared(10, 1).enough_checked and not compared(10, 2).enough_checked
    assert compared(0, 0).enough_checked  # no key: nothing to check
    assert compared(10, 1).checked == 9
    assert compared(10, 1).checked_text() == "checked 9 of 10 keys (90%)"
    assert compared(0, 0).checked_text() == "checked 0 of 0 keys"
