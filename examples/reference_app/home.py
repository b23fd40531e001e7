"""``GET /``: what this service is."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def index(request: Request) -> Response:
    return JSONResponse({"service": "hardenkit reference app"})


routes = [Route("/", index)]
