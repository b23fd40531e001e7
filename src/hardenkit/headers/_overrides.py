"""Per-route header policies: a decorator for any endpoint, a dependency for FastAPI."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from hardenkit.headers._nonce import set_header_policy
from hardenkit.headers._policy import HeaderPolicy

__all__ = ["header_policy", "header_policy_dependency"]

F = TypeVar("F", bound=Callable[..., Any])


def header_policy(policy: HeaderPolicy) -> Callable[[F], F]:
    """Decorate an endpoint (Starlette or FastAPI, sync or async) to answer with ``policy``.

    ::

        @app.get("/embed")
        @header_policy(dataclasses.replace(HeaderPolicy(), frame_options="SAMEORIGIN"))
        async def embed() -> HTMLResponse: ...

    The signature is preserved, so FastAPI still sees the endpoint's parameters. Needs
    :class:`SecurityHeadersMiddleware` in front; without it the decorator does nothing.
    """
    if not isinstance(policy, HeaderPolicy):
        raise TypeError("header_policy() takes a HeaderPolicy")

    def decorate(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):
            coroutine = cast("Callable[..., Awaitable[Any]]", endpoint)

            @functools.wraps(endpoint)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                set_header_policy(policy)
                return await coroutine(*args, **kwargs)

            return cast("F", async_wrapper)

        @functools.wraps(endpoint)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            set_header_policy(policy)
            return endpoint(*args, **kwargs)

        return cast("F", sync_wrapper)

    return decorate


def header_policy_dependency(policy: HeaderPolicy) -> Callable[[], Awaitable[None]]:
    """Return a FastAPI dependency that makes the route answer with ``policy``.

    ``@app.get("/embed", dependencies=[Depends(header_policy_dependency(policy))])``,
    or on a whole ``APIRouter(dependencies=[...])``.
    """
    if not isinstance(policy, HeaderPolicy):
        raise TypeError("header_policy_dependency() takes a HeaderPolicy")

    async def use_header_policy() -> None:
        set_header_policy(policy)

    return use_header_policy
