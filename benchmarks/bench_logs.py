"""Redaction against structlog's JSONRenderer, on the same events in the same run.

The target: redacting a typical 12-field event with no secret costs less than rendering
it to JSON, so redaction never doubles the cost of a log line. Events vary call by call
(request ids, paths, client addresses drawn from 10 000 distinct values, more than the
redactor's cache of clean strings holds), as they do in a real service.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

from structlog.processors import JSONRenderer

from benchmarks._harness import Row, compare_sync
from hardenkit.logs import Redactor

_USER_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.4",
    "python-httpx/0.27.0",
    "okhttp/4.12.0",
    "curl/8.5.0",
]


def _typical_events(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {
            "event": rng.choice(["request finished", "order created", "cache miss"]),
            "level": "info",
            "logger": "shop.http",
            "timestamp": f"2024-05-01T12:{index % 60:02d}:{rng.randrange(60):02d}.123456Z",
            "request_id": rng.randbytes(16).hex(),
            "method": rng.choice(["GET", "POST"]),
            "path": f"/api/v1/orders/{100000 + index}/items",
            "status": rng.choice([200, 201, 404]),
            "duration_ms": round(rng.uniform(1, 250), 3),
            "client_ip": f"10.{index % 256}.{(index // 256) % 256}.{rng.randrange(256)}",
            "tenant": rng.choice(["acme", "globex", "initech"]),
            "user_agent": rng.choice(_USER_AGENTS),
        }
        for index in range(count)
    ]


def _nested_event_with_secrets() -> dict[str, Any]:
    return {
        "event": "upstream call failed",
        "level": "error",
        "request_id": "3f2b8f0e6a434b8e9f539a0d6f1f2c11",
        "upstream": {
            "url": "https://billing.example.com/v1/charges?api_key=sk_live_51H8qX2eZvKYlo2C0AbCdEf",
            "request": {
                "headers": {
                    "authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl",
                    "accept": "application/json",
                },
                "body": {"amount": 1299, "note": "card 4242 4242 4242 4242 on file"},
            },
            "attempt": 2,
        },
    }


def run(quick: bool) -> list[Row]:
    number, repeat = (5_000, 3) if quick else (20_000, 7)
    redactor = Redactor()
    renderer = JSONRenderer()
    events = _typical_events(10_000)
    # Each subject gets its own cycle over the same events: same work, same order.
    redact_cycle: Iterator[dict[str, Any]] = itertools.cycle(events)
    render_cycle: Iterator[dict[str, Any]] = itertools.cycle(events)
    times = compare_sync(
        {
            "redact": lambda: redactor.redact_event(next(redact_cycle)),
            "render": lambda: renderer(None, "info", dict(next(render_cycle))),
        },
        number=number,
        repeat=repeat,
    )
    nested = _nested_event_with_secrets()
    nested_times = compare_sync(
        {
            "redact": lambda: redactor.redact_event(nested),
            "render": lambda: renderer(None, "error", dict(nested)),
        },
        number=number // 2,
        repeat=repeat,
    )
    return [
        Row(
            piece="logs",
            figure="redact a typical 12-field event, no secret",
            ours=times["redact"] * 1e6,
            peer_name="structlog JSONRenderer",
            peer=times["render"] * 1e6,
            max_ratio=1.0,
        ),
        Row(
            piece="logs",
            figure="redact a 3-level nested event with 3 secrets",
            ours=nested_times["redact"] * 1e6,
            peer_name="structlog JSONRenderer",
            peer=nested_times["render"] * 1e6,
        ),
    ]
