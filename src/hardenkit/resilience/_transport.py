"""What ``ResilientTransport`` does, whichever httpx it is for (``httpx`` or ``httpx2``).

The two packages share their transport API (``BaseTransport.handle_request``,
``AsyncBaseTransport.handle_async_request``, ``Request``, ``Response``); the OpenAI SDK
and Starlette's ``TestClient`` moved to ``httpx2`` while most clients still use
``httpx``. :class:`ResilientSending` holds every rule once; each public
``ResilientTransport`` (:mod:`hardenkit.resilience.httpx`,
:mod:`hardenkit.resilience.httpx2`) names its package and types its methods.

Per request it picks the policy of the request's host (a default one per unknown host),
retries only idempotent methods (``GET HEAD OPTIONS PUT DELETE TRACE``; ``POST`` and
``PATCH`` too when the request carries an ``Idempotency-Key`` header or
``retry_non_idempotent=True``), treats 5xx and 429 responses as failures for the breaker,
honours their ``Retry-After``, shrinks the socket timeouts to the attempt's budget (the
only thing that bounds a sync request), and forwards the request id and ``traceparent``.
After the last attempt the last response is returned as the client would return it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Self

from hardenkit.context import remaining_time, request_id_var, trace_id_var
from hardenkit.resilience.core import Resilient, resilient
from hardenkit.resilience.retry import IDEMPOTENT_METHODS

__all__ = ["ResilientSending", "UpstreamStatusError"]


class UpstreamStatusError(Exception):
    """A 5xx or 429 response, raised inside the transport so every layer sees a failure.

    It never leaves a ``ResilientTransport``: after the last attempt the response is
    returned to the caller.
    """

    def __init__(self, response: Any) -> None:
        self.response = response
        self.status_code: int = response.status_code
        super().__init__(f"upstream answered {response.status_code}")


def _is_failure_status(status: int) -> bool:
    return status >= 500 or status == 429


def _bounded_timeouts(request: Any) -> None:
    left = remaining_time()
    if left is None:
        return
    current = request.extensions.get("timeout") or {}
    bounded = {
        phase: left if value is None else min(value, left)
        for phase, value in {
            phase: current.get(phase) for phase in ("connect", "read", "write", "pool")
        }.items()
    }
    request.extensions = {**request.extensions, "timeout": bounded}


class ResilientSending:
    """The rules of ``ResilientTransport``, on the requests of the package it names.

    Args:
        transport: The transport that sends; default the package's ``HTTPTransport()``
            for a sync client and ``AsyncHTTPTransport()`` for an async one.
        policies: Policy by host name (``"api.openai.com"``).
        default_policy: Builds the policy of a host not in ``policies`` (default:
            ``resilient(host)``, one breaker per host).
        retry_non_idempotent: Retry ``POST``/``PATCH`` even without an
            ``Idempotency-Key`` header (only when the upstream deduplicates them).
        request_id_header: Header carrying the current request id upstream (``None``
            to not forward it).
    """

    _package: ClassVar[ModuleType]  # httpx or httpx2: its transports and types

    def __init__(
        self,
        transport: Any = None,
        *,
        policies: Mapping[str, Resilient] | None = None,
        default_policy: Callable[[str], Resilient] | None = None,
        retry_non_idempotent: bool = False,
        request_id_header: str | None = "X-Request-ID",
    ) -> None:
        package = self._package
        if transport is not None and not isinstance(
            transport, package.BaseTransport | package.AsyncBaseTransport
        ):
            # httpx's and httpx2's classes share their names, not their types.
            raise TypeError(
                f"this ResilientTransport wraps a {package.__name__} transport, not a "
                f"{type(transport).__module__.partition('.')[0]} one"
            )
        self._transport = transport
        self._policies = {host.lower(): policy for host, policy in (policies or {}).items()}
        self._default_policy = default_policy or resilient
        self._single_attempt: dict[str, Resilient] = {}
        self._lock = threading.Lock()
        self.retry_non_idempotent = retry_non_idempotent
        self.request_id_header = request_id_header

    def policy_for(self, request: Any) -> Resilient:
        """The policy applied to ``request`` (a single attempt when it must not repeat)."""
        host: str = request.url.host.lower()
        policy = self._policies.get(host)
        if policy is None:
            with self._lock:
                policy = self._policies.get(host)
                if policy is None:
                    policy = self._policies[host] = self._default_policy(host)
        if self._may_repeat(request) or policy.retry is None:
            return policy
        single = self._single_attempt.get(host)
        if single is None:
            single = Resilient(
                policy.name,
                retry=None,
                breaker=policy.breaker,
                timeout=policy.timeout,
                bulkhead=policy.bulkhead,
                deadline=policy.deadline,
            )
            self._single_attempt[host] = single
        return single

    def _may_repeat(self, request: Any) -> bool:
        return (
            request.method in IDEMPOTENT_METHODS
            or self.retry_non_idempotent
            or "idempotency-key" in request.headers
        )

    def _forward_context(self, request: Any) -> None:
        request_id = request_id_var.get()
        header = self.request_id_header
        if header and request_id and header not in request.headers:
            request.headers[header] = request_id
        if "traceparent" not in request.headers:
            carrier: dict[str, str] = {}
            try:
                from opentelemetry.propagate import inject  # noqa: PLC0415 - optional

                inject(carrier)
            except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
                pass
            traceparent = carrier.get("traceparent")
            trace_id = trace_id_var.get()
            if traceparent is None and trace_id:
                # Same trace, a fresh parent id; flags 00: the sampling decision is unknown.
                traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-00"
            if traceparent:
                request.headers["traceparent"] = traceparent

    # --- sync ---------------------------------------------------------------------------

    def _sync_transport(self) -> Any:
        if self._transport is None:
            self._transport = self._package.HTTPTransport()
        if not isinstance(self._transport, self._package.BaseTransport):
            raise TypeError("this ResilientTransport wraps an async transport")
        return self._transport

    def _send(self, request: Any) -> Any:
        _bounded_timeouts(request)
        response = self._sync_transport().handle_request(request)
        if _is_failure_status(response.status_code):
            try:
                response.read()
            finally:
                response.close()
            raise UpstreamStatusError(response)
        return response

    def _handle(self, request: Any) -> Any:
        self._forward_context(request)
        policy = self.policy_for(request)
        if policy.retry is not None:
            request.read()  # a body that was streamed once cannot be sent again
        try:
            return policy.call(self._send, request)
        except UpstreamStatusError as final:
            return final.response

    # --- async --------------------------------------------------------------------------

    def _async_transport(self) -> Any:
        if self._transport is None:
            self._transport = self._package.AsyncHTTPTransport()
        if not isinstance(self._transport, self._package.AsyncBaseTransport):
            raise TypeError("this ResilientTransport wraps a sync transport")
        return self._transport

    async def _send_async(self, request: Any) -> Any:
        _bounded_timeouts(request)
        response = await self._async_transport().handle_async_request(request)
        if _is_failure_status(response.status_code):
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise UpstreamStatusError(response)
        return response

    async def _handle_async(self, request: Any) -> Any:
        self._forward_context(request)
        policy = self.policy_for(request)
        if policy.retry is not None:
            await request.aread()
        try:
            return await policy.call_async(self._send_async, request)
        except UpstreamStatusError as final:
            return final.response

    # --- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the wrapped sync transport."""
        if isinstance(self._transport, self._package.BaseTransport):
            self._transport.close()

    async def aclose(self) -> None:
        """Close the wrapped async transport."""
        if isinstance(self._transport, self._package.AsyncBaseTransport):
            await self._transport.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
