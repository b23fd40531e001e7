"""Checked by mypy --strict (tests/typecheck/test_typing.py), never run: what users write."""

from __future__ import annotations

import asyncio
from typing import assert_type

from hardenkit import resilient


@resilient("typing-async", timeout=1)
async def fetch(item_id: int, *, verbose: bool = False) -> str:
    return str(item_id)


@resilient("typing-sync", timeout=1)
def compute(item_id: int, *, verbose: bool = False) -> bytes:
    return bytes(item_id)


async def use() -> None:
    # A coroutine function stays one: create_task() accepts its call.
    task = asyncio.create_task(fetch(1, verbose=True))
    assert_type(await task, str)
    assert_type(await fetch(2), str)
    assert_type(compute(3, verbose=False), bytes)
    await asyncio.gather(fetch(4), fetch(5))
