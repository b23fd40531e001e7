"""``ResilientTransport``: the ``resilient`` policy for every request an httpx client sends.

::

    transport = ResilientTransport(policies={"api.openai.com": resilient("openai", timeout=20)})
    client = httpx.AsyncClient(transport=transport)

The rules (which policy, what is retried, what counts as a failure, timeouts bounded by
the request's budget, the request id and ``traceparent`` forwarded) are
:class:`~hardenkit.resilience._transport.ResilientSending`'s, the same for ``httpx`` and
``httpx2``. Needs the ``httpx`` extra.
"""

from __future__ import annotations

from typing import ClassVar

import httpx

from hardenkit.resilience._transport import ResilientSending, UpstreamStatusError

__all__ = ["ResilientTransport", "UpstreamStatusError"]


class ResilientTransport(ResilientSending, httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport (sync and async) applying a ``resilient`` policy per host.

    Its arguments are :class:`~hardenkit.resilience._transport.ResilientSending`'s:
    ``transport`` (a ``httpx`` one; ``httpx.HTTPTransport()`` or
    ``httpx.AsyncHTTPTransport()`` by default), ``policies`` by host,
    ``default_policy``, ``retry_non_idempotent``, ``request_id_header``.

    Raises:
        TypeError: ``transport`` is not a ``httpx`` transport.
    """

    _package: ClassVar = httpx

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its host's policy (sync client)."""
        response: httpx.Response = self._handle(request)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its host's policy (async client)."""
        response: httpx.Response = await self._handle_async(request)
        return response
