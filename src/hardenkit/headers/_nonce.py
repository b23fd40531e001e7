"""Per-request facts of the headers middleware: the CSP nonce and a route's own policy.

The middleware puts one small object in a context variable for each request. Templates
read the nonce from it (:func:`get_csp_nonce`); a route decorator or FastAPI dependency
writes the policy that route wants into it (:func:`set_header_policy`), and the
middleware reads that back when the response starts. The object is shared by reference,
so a value set inside a handler (or in the thread a sync handler runs in) reaches the
middleware even though context variables themselves do not flow outwards.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.requests import Request

    from hardenkit.headers._policy import HeaderPolicy

__all__ = ["csp_nonce_context", "get_csp_nonce", "set_header_policy"]


class RequestHeaderState:
    """The nonce of one request and the policy its route chose, if any."""

    __slots__ = ("nonce", "policy")

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self.policy: HeaderPolicy | None = None


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
