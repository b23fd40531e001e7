"""Per-request facts of the headers middleware: the CSP nonce and a route's own policy.

The middleware puts one small object in a context variable for each request. Templates
read the nonce from it (:func:`get_csp_nonce`); a route decorator or FastAPI dependency
writes the policy that route wants into it (:func:`set_header_policy`), and the
middleware reads that back when the response starts. The object is shared by reference,
so a value set inside a handler (or in the thread a sync handler runs in) reaches the
middleware even though context variables themselves do not flow outwards.

The nonce is drawn the first time something asks for it: a template, the handler
(``request.state.csp_nonce``, through :class:`RequestState`) or the middleware itself
when an HTML response starts. A JSON response nobody asked a nonce for costs no
randomness and carries none (its CSP has no nonce).
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

    from hardenkit.headers._policy import HeaderPolicy

__all__ = ["csp_nonce_context", "get_csp_nonce", "set_header_policy"]


class RequestHeaderState:
    """The nonce of one request (drawn when first read) and the policy its route chose."""

    __slots__ = ("_nonce", "policy")

    def __init__(self) -> None:
        self._nonce: str | None = None
        self.policy: HeaderPolicy | None = None

    @property
    def nonce(self) -> str:
        """This request's CSP nonce: 128 random bits, drawn once."""
        if self._nonce is None:
            self._nonce = secrets.token_urlsafe(16)
        return self._nonce


_NONCE_KEY = "csp_nonce"


class RequestState(dict[str, Any]):
    """``scope["state"]`` while the headers middleware serves a request.

    It starts as a copy of the state the server gave (uvicorn's copy of the lifespan
    state) and writes every change through to it, so code outside the middleware that
    holds the original (an outer middleware's ``request.state``) still sees what the
    application stores. ``csp_nonce`` is drawn the first time it is read.
    """

    __slots__ = ("_header_state", "_origin")

    def __init__(self, origin: dict[str, Any] | None, header_state: RequestHeaderState) -> None:
        super().__init__(origin or ())
        self._origin = origin
        self._header_state = header_state

    def __missing__(self, key: str) -> Any:
        if key != _NONCE_KEY:
            raise KeyError(key)
        nonce = self._header_state.nonce
        self[key] = nonce
        return nonce

    def get(self, key: str, default: Any = None) -> Any:
        """``state.get("csp_nonce")`` draws the nonce, as ``state["csp_nonce"]`` does."""
        return self[key] if key == _NONCE_KEY else super().get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if self._origin is not None:
            self._origin[key] = value

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        if self._origin is not None:
            self._origin.pop(key, None)


request_header_state: ContextVar[RequestHeaderState | None] = ContextVar(
    "hardenkit_request_header_state", default=None
)


def get_csp_nonce() -> str | None:
    """Return the CSP nonce of the current request, or ``None`` outside the middleware.

    Put it on every inline ``<script>`` and ``<style>``: ``<script nonce="{{ nonce }}">``.
    The same value is in ``request.state.csp_nonce``.
    """
    state = request_header_state.get()
    return None if state is None else state.nonce


def csp_nonce_context(request: Request) -> dict[str, Any]:
    """Jinja2 context processor giving templates ``csp_nonce``.

    ``Jinja2Templates(directory=..., context_processors=[csp_nonce_context])``.
    """
    return {"csp_nonce": getattr(request.state, "csp_nonce", None) or get_csp_nonce()}


def set_header_policy(policy: HeaderPolicy) -> bool:
    """Use ``policy`` for the response of the current request.

    Called by :func:`~hardenkit.headers.header_policy` and
    :func:`~hardenkit.headers.header_policy_dependency`; call it yourself from a handler
    that decides late. Returns ``False`` (and changes nothing) outside the middleware.
    """
    state = request_header_state.get()
    if state is None:
        return False
    state.policy = policy
    return True
