"""The CORS layer ``install()`` adds for ``HARDENKIT_CORS_ORIGINS``: Starlette's, configured.

The request id and tenant headers are always allowed, and the request id always exposed,
so a page can send and read them without listing them again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from starlette.middleware import Middleware
from starlette.middleware import cors as starlette_cors
from starlette.types import Message, Receive, Scope, Send

from hardenkit.context import FACTS_KEY, own_facts

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["CORSMiddleware", "cors_layer", "with_vary_origin"]

_ORIGIN: Final = b"origin"
_VARY: Final = b"vary"
_VARY_ORIGIN: Final = (_VARY, b"Origin")


class CORSMiddleware(starlette_cors.CORSMiddleware):
    """Starlette's ``CORSMiddleware``, with a cheaper path for requests without ``Origin``.

    Most requests to an API come from servers, not pages, and carry no ``Origin``: all
    Starlette does for them is add ``Origin`` to ``Vary`` (so caches keep cross-origin
    answers apart), through its ``Headers`` and ``MutableHeaders`` objects. This does the
    same to the raw header list, byte for byte; requests with an ``Origin`` (preflights
    and page requests) go through Starlette's code unchanged.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == "http" and FACTS_KEY not in scope:  # the request's first layer
            await own_facts(self, scope, receive, send)
            return
        if scope["type"] != "http" or any(name == _ORIGIN for name, _ in scope["headers"]):
            await super().__call__(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_vary_origin(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, send_with_vary)


def with_vary_origin(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``Origin`` added to ``Vary``, as Starlette's CORS layer adds it.

    The ``vary`` values are joined into the first ``vary`` header (the others removed);
    without one, ``vary: Origin`` is appended.
    """
    result = list(headers)
    found = [index for index, (name, _) in enumerate(result) if name == _VARY]
    if not found:
        result.append(_VARY_ORIGIN)
        return result
    joined = b", ".join([*(result[index][1] for index in found), b"Origin"])
    for index in reversed(found[1:]):
        del result[index]
    result[found[0]] = (_VARY, joined)
    return result


def cors_layer(settings: HardenSettings) -> Middleware | None:
    """Return Starlette's CORS middleware for ``HARDENKIT_CORS_ORIGINS`` (``None`` when empty)."""
    if not settings.cors_origins:
        return None
    return Middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=list(settings.cors_allow_methods),
        allow_headers=_unique(
            [*settings.cors_allow_headers, settings.request_id_header, settings.tenant_header]
        ),
        allow_credentials=settings.cors_allow_credentials,
        expose_headers=_unique([*settings.cors_expose_headers, settings.request_id_header]),
        max_age=settings.cors_max_age,
    )


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())
