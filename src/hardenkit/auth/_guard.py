"""One object usable as a Starlette endpoint decorator and as a FastAPI dependency."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request

from hardenkit.auth.principal import Principal

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

# FastAPI reads a dependency's signature to know what to inject. A class-level
# ``__signature__`` tells it: "give me the Request", with real classes rather than
# strings it would have to resolve.
_DEPENDENCY_SIGNATURE = inspect.Signature(
    [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)],
    return_annotation=Principal,
)


class EndpointGuard:
    """Base of the guards: ``@guard`` on an endpoint, or ``Depends(guard)`` in FastAPI.

    As a decorator, the endpoint runs only when :meth:`check` passes. As a dependency,
    it returns the :class:`Principal` (FastAPI runs it in its threadpool, since it is
    synchronous: it must stay usable as a plain decorator).
    """

    __signature__ = _DEPENDENCY_SIGNATURE

    def check(self, connection: HTTPConnection) -> Principal:
        """Return the principal allowed through, or raise ``HardenError``."""
        raise NotImplementedError

    @overload
    def __call__(self, request: HTTPConnection) -> Principal: ...

    @overload
    def __call__(self, request: Endpoint) -> Endpoint: ...

    def __call__(self, request: Any) -> Any:
        """Check a request (dependency use) or wrap an endpoint (decorator use)."""
        if isinstance(request, HTTPConnection):
            return self.check(request)
        if not callable(request):
            raise TypeError("decorate an endpoint function or pass a Request")
        return self._wrap(request)

    def _wrap(self, endpoint: Callable[..., Any]) -> Callable[..., Any]:
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def guarded(connection: HTTPConnection, *args: Any, **kwargs: Any) -> Any:
            self.check(connection)
            if is_async:
                return await endpoint(connection, *args, **kwargs)
            return await run_in_threadpool(endpoint, connection, *args, **kwargs)

        # Startup checks find guarded endpoints by this mark (a public prefix over one is
        # refused in production).
        guarded.hardenkit_guard = self  # type: ignore[attr-defined]
        return guarded
