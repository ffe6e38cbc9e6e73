"""``one_ahead``: an atomic ingest's batches, the next one made while the current one is written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pgvs.store._ingest_sources import one_ahead


class Source:
    """An async generator's stand-in that records what was asked of it and when."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.made: list[int] = []
        self.closed = False
        self.cancelled = False
        self.gate: dict[int, asyncio.Event] = {}

    async def items(self) -> AsyncIterator[int]:
        try:
            for n in range(self.count):
                if n in self.gate:
                    try:
                        await self.gate[n].wait()
                    except asyncio.CancelledError:
                        self.cancelled = True
                        raise
                if n == self.fail_at:
                    raise ValueError(f"item {n}")
                self.made.append(n)
                yield n
        finally:
            self.closed = True


async def test_order_and_the_next_item_made_during_the_current_one() -> None:
    source = Source(4)
    seen = []
    async for item in one_ahead(source.items()):
        await asyncio.sleep(0)  # the caller's work: the next item is made meanwhile
        seen.append((item, list(source.made)))
    assert [item for item, _ in seen] == [0, 1, 2, 3]
    assert seen[0][1] == [0, 1]  # item 1 was made while the caller held item 0
    assert source.closed


async def test_an_error_is_raised_where_its_item_would_have_been() -> None:
    source = Source(5, fail_at=2)
    seen: list[int] = []

    async def consume() -> None:
        async for item in one_ahead(source.items()):
            seen.append(item)

    with pytest.raises(ValueError, match="item 2"):
        await consume()
    assert seen == [0, 1]


async def test_stopping_early_cancels_the_item_being_made_and_closes_the_source() -> None:
    source = Source(5)
    source.gate[2] = asyncio.Event()  # item 2 is still being made when the caller stops
    ahead = one_ahead(source.items())
    assert await anext(ahead) == 0
    assert await anext(ahead) == 1
    await asyncio.sleep(0)
    await ahead.aclose()
    assert source.cancelled
    assert source.closed
    assert source.made == [0, 1]


async def test_an_unasked_items_error_is_not_raised_when_stopping() -> None:
    source = Source(5, fail_at=1)
    ahead = one_ahead(source.items())
    assert await anext(ahead) == 0
    await asyncio.sleep(0)  # item 1 fails in the background
    await ahead.aclose()  # its error belonged to nobody: no raise, no "never retrieved"
    assert source.closed


async def test_empty() -> None:
    source = Source(0)
    assert [item async for item in one_ahead(source.items())] == []
    assert source.closed
