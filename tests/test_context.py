from __future__ import annotations

import asyncio
import time

from hardenkit.context import (
    deadline_var,
    get_deadline,
    remaining_time,
    request_id_var,
    set_deadline,
)


def test_no_deadline_outside_a_request() -> None:
    assert get_deadline() is None
    assert remaining_time() is None


def test_nested_deadline_can_only_shrink_the_budget() -> None:
    outer = set_deadline(2.0)
    try:
        first = get_deadline()
        inner = set_deadline(10.0)
        try:
            assert get_deadline() == first
        finally:
            deadline_var.reset(inner)
        shorter = set_deadline(0.5)
        try:
            remaining = remaining_time()
            assert remaining is not None
            assert 0.0 < remaining <= 0.5
        finally:
            deadline_var.reset(shorter)
    finally:
        deadline_var.reset(outer)
    assert get_deadline() is None


def test_remaining_time_never_goes_negative() -> None:
    token = deadline_var.set(time.monotonic() - 5)
    try:
        assert remaining_time() == 0.0
    finally:
        deadline_var.reset(token)


async def test_tasks_started_in_a_request_see_its_context() -> None:
    token = request_id_var.set("req-in-task-01")
    try:

        async def child() -> str | None:
            return request_id_var.get()

        assert await asyncio.create_task(child()) == "req-in-task-01"
    finally:
        request_id_var.reset(token)
