"""``ResilientTransport`` for httpx2 (the OpenAI SDK's client): the ``resilient`` policy per host.

::

    transport = ResilientTransport(policies={"api.openai.com": resilient("openai", timeout=20)})
    client = httpx2.AsyncClient(transport=transport)

The rules (which policy, what is retried, what counts as a failure, timeouts bounded by
the request's budget, the request id and ``traceparent`` forwarded) are
:class:`~hardenkit.resilience._transport.ResilientSending`'s, the same for ``httpx`` and
``httpx2``. Needs the ``httpx2`` extra.
"""

from __future__ import annotations

from typing import ClassVar

import httpx2

from hardenkit.resilience._transport import ResilientSending, UpstreamStatusError

__all__ = ["ResilientTransport", "UpstreamStatusError"]


class ResilientTransport(ResilientSending, httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """An httpx2 transport (sync and async) applying a ``resilient`` policy per host.

    Its arguments are :class:`~hardenkit.resilience._transport.ResilientSending`'s:
    ``transport`` (a ``httpx2`` one; ``httpx2.HTTPTransport()`` or
    ``httpx2.AsyncHTTPTransport()`` by default), ``policies`` by host,
    ``default_policy``, ``retry_non_idempotent``, ``request_id_header``.

    Raises:
        TypeError: ``transport`` is not a ``httpx2`` transport.
    """

    _package: ClassVar = httpx2

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through its host's policy (sync client)."""
        response: httpx2.Response = self._handle(request)
        return response

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through its host's policy (async client)."""
        response: httpx2.Response = await self._handle_async(request)
        return response
