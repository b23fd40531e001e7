"""An app whose import runs ``install()``, with a route whose ``org_id`` is not bound."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import hardenkit


async def things(request: Request) -> Response:
    return JSONResponse({})


app = Starlette(routes=[Route("/orgs/{org_id}/things", things)])
hardenkit.install(app)
