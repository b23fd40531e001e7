r"""``POST /demo/logging``: a careless handler, to show that the logs stay clean anyway.

It logs everything it received (headers, query parameters, the JSON body), then fails
with the caller's token in the exception message, the way real bugs leak credentials.
The response is the usual 500 problem that says nothing; the log lines carry the request
id, the headers and the traceback, with every credential replaced by ``[REDACTED...]``.

    curl -X POST 'http://127.0.0.1:8000/demo/logging?api_key=sk_live_51H8FAKEFAKEFAKE' \\
         -H 'X-Api-Key: demo-key-9f8e7d6c5b4a' -H 'Content-Type: application/json' \\
         -d '{"user": "ada", "password": "correct horse battery staple"}'
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hardenkit import read_body
from hardenkit.bodylimit import parse_json

_logger = structlog.get_logger("examples.logging_demo")
DEMO_BODY_BYTES = 64 * 1024


class DemoUpstreamError(RuntimeError):
    """What a client library might raise: with the credential in its message."""


async def careless_handler(request: Request) -> Response:
    raw = await read_body(request, DEMO_BODY_BYTES)
    body = parse_json(raw) if raw else {}  # malformed JSON is the client's 400, not a crash
    _logger.info(
        "demo_request_received",
        headers=dict(request.headers),
        query=dict(request.query_params),
        url=str(request.url),
        body=body,
    )
    token = request.headers.get("authorization", "")
    raise DemoUpstreamError(f"upstream refused the call made with {token!r} for {body!r}")


routes = [Route("/demo/logging", careless_handler, methods=["POST"])]
