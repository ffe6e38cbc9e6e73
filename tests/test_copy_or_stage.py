"""Which rows of an ingest batch are COPied straight in and which are merged from the stage."""

from __future__ import annotations

import pytest

from pgvs._copy_sql import copy_or_stage


@pytest.mark.parametrize(
    ("rows", "stored", "staged_only", "copied", "staged"),
    [
        (3, [], False, [0, 1, 2], []),  # no id stored: all COPied
        (3, [1], False, [0, 2], [1]),
        (3, [2, 0], False, [1], [2, 0]),  # the stored positions as the probe found them
        (3, [0, 1, 2], False, [], [0, 1, 2]),
        (3, [], True, [], [0, 1, 2]),  # row-level security: every row through the stage
        (3, [1], True, [], [0, 1, 2]),
        (0, [], False, [], []),
        (0, [], True, [], []),
    ],
)
def test_copy_or_stage(
    rows: int, stored: list[int], staged_only: bool, copied: list[int], staged: list[int]
) -> None:
    assert copy_or_stage(rows, stored, staged_only=staged_only) == (copied, staged)
