"""Blocking SDK calls from asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar, cast

T = TypeVar("T")


async def iterate_in_threads(iterator: Iterator[T]) -> AsyncIterator[T]:
    """The items of a blocking iterator (API pages fetched as it goes), each step taken in a
    thread so that the event loop goes on meanwhile."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, iterator, done)
        if item is done:
            return
        yield cast(T, item)
