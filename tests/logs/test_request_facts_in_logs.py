"""Lines about a request name that request: never the caller a pipelined one followed.

A pipelined request starts with the previous request's context (tests/support/inherited.py):
the layers outside auth, and the request id layer before it set the id, logged and
audited it as the previous caller (an attacker round found a 500, a 504 and a 429 of one
tenant's request filed under another tenant).
"""

from __future__ import annotations

import io
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hardenkit import public
from tests.support.inherited import Sent, bearer, facts, hardened, pipelined, public_facts


async def crash(request: Request) -> Response:
    raise RuntimeError("handler bug")


def installed() -> Starlette:
    routes = [Route("/me", facts), Route("/crash", crash), Route("/", public()(public_facts))]
    return hardened(Starlette(routes=routes), rate_limit_default="3/minute")


async def test_lines_about_a_request_never_name_the_caller_of_another(
    json_log: io.StringIO,
) -> None:
    alice = bearer("acme", "alice")
    answers = await pipelined(
        installed(),
        Sent("/me", alice),
        Sent("/crash", bearer("globex", "bob")),  # 500
        Sent("/me", alice),
        Sent("/", {"X-Request-ID": "client-chosen-id-01"}),  # anonymous, over 3/minute
    )
    assert [answer.status for answer in answers] == [200, 500, 200, 429]
    ids = [answer.headers["x-request-id"] for answer in answers]
    lines: list[dict[str, Any]] = [json.loads(line) for line in json_log.getvalue().splitlines()]
    about = {line.get("event_type", line["event"]): line for line in lines}
    crashed, replaced, limited = (
        about[event] for event in ("unhandled_exception", "request_id_replaced", "rate_limited")
    )
    assert crashed["request_id"] == ids[1]
    assert "acme" not in (crashed.get("tenant"), crashed.get("actor"))
    assert "alice" not in (crashed.get("subject"), crashed.get("actor"))
    for line in (replaced, limited):
        assert line["request_id"] == ids[3], line
        assert [line.get(name) for name in ("tenant", "subject", "actor")] == [None] * 3, line
