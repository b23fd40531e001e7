"""SecurityHeadersMiddleware: the right security headers on every response, nonce included."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._paths import PathTable, route_path
from hardenkit.context import FACTS_KEY, REQUESTS, own_facts
from hardenkit.headers._nonce import RequestHeaderState, RequestState, request_header_state
from hardenkit.headers._policy import CompiledHeaders, HeaderPolicy, Kind

__all__ = ["SecurityHeadersMiddleware"]

_logger = structlog.get_logger("hardenkit.headers")

_HTML_TYPES: Final = (b"text/html", b"application/xhtml+xml")
_INLINE_SCRIPT: Final = re.compile(
    rb"<script(?![^>]*\ssrc\s*=)[^>]*>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL
)
_CACHE_CONTROL: Final = b"cache-control"
_MAX_HASHED_POLICIES: Final = 64


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding security headers to every HTTP response.

    HTML responses get the HTML CSP (with this request's nonce), everything else the API
    CSP and ``Cache-Control: no-store``; all get HSTS (https requests only), nosniff,
    frame, referrer, cross-origin and permissions policies. A WebSocket handshake refused
    with an HTTP response (a 401 or 429 over ``websocket.http.response``) gets them like
    any other refusal. Headers naming the software
    stack (``Server``, ``X-Powered-By``, ...) are removed. A header the application set
    itself is kept unless the policy says otherwise; none is ever sent twice.

    The nonce is in ``request.state.csp_nonce`` and :func:`get_csp_nonce` for templates;
    it is drawn when first read, or when an HTML response starts: a JSON response whose
    handler never asked for one has none.

    Args:
        app: The ASGI application to wrap.
        policy: The default :class:`HeaderPolicy`.
        routes: Path pattern (exact, or a prefix ending in ``*``) to the policy for
            those paths, e.g. ``{"/docs": fastapi_docs_policy()}``. A route decorator
            (:func:`header_policy`) wins over this map.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: HeaderPolicy | None = None,
        routes: Mapping[str, HeaderPolicy] | None = None,
    ) -> None:
        self.app = app
        self.policy = policy if policy is not None else HeaderPolicy()
        for pattern, route_policy in (routes or {}).items():
            if not isinstance(route_policy, HeaderPolicy):
                raise TypeError(f"routes[{pattern!r}] must be a HeaderPolicy")
        self.routes: PathTable[HeaderPolicy] = PathTable(routes)
        self._hashed_csp: dict[tuple[int, bool, tuple[bytes, ...]], tuple[bytes, ...]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] in REQUESTS and FACTS_KEY not in scope:  # the request's first layer
            await own_facts(self, scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, self._refusal_headers(scope, send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_state = RequestHeaderState()
        origin = scope.get("state")
        scope["state"] = RequestState(origin, header_state)
        token = request_header_state.set(header_state)
        https = scope.get("scheme") == "https"
        root_path: str = scope.get("root_path", "")
        path_policy = (
            self.routes.get(route_path(scope), self.policy) if self.routes else self.policy
        )
        held: list[Message] = []
        hashing_policy: HeaderPolicy | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal hashing_policy
            if hashing_policy is not None:
                await self._continue_hashing(
                    message,
                    held,
                    policy=hashing_policy,
                    https=https,
                    nonce=header_state,
                    send=send,
                )
                return
            if message["type"] == "http.response.start":
                policy = (header_state.policy or path_policy).at_root(root_path)
                headers, kind, present = _without_leaks(message.get("headers", ()), policy)
                message["headers"] = headers
                if (
                    kind == "html"
                    and policy.hash_inline_scripts
                    and b"content-encoding" not in present
                ):
                    hashing_policy = policy
                    held.append(message)
                    return
                _apply(headers, present, policy, policy.compiled(kind, https=https), header_state)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            request_header_state.reset(token)
            if origin is not None:
                scope["state"] = origin  # it holds every change: they were written through

    def _refusal_headers(self, scope: Scope, send: Send) -> Send:
        """Wrap ``send`` so an HTTP answer to a WebSocket handshake carries the headers."""
        https = scope.get("scheme") == "wss"
        policy = self.routes.get(scope["path"], self.policy) if self.routes else self.policy
        policy = policy.at_root(scope.get("root_path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "websocket.http.response.start":
                headers, kind, present = _without_leaks(message.get("headers", ()), policy)
                message["headers"] = headers
                # No page is rendered from a refusal: a nonce (if HTML) nobody can use.
                compiled = policy.compiled(kind, https=https)
                _apply(headers, present, policy, compiled, RequestHeaderState())
            await send(message)

        return send_with_headers

    async def _continue_hashing(
        self,
        message: Message,
        held: list[Message],
        *,
        policy: HeaderPolicy,
        https: bool,
        nonce: RequestHeaderState,
        send: Send,
    ) -> None:
        """Hold an HTML page's body until complete, then allow its inline scripts by hash.

        A page larger than ``hash_max_bytes``, or a message that is not a body part,
        releases what is held with the policy as it is: its inline scripts stay blocked.
        """
        if not held:
            await send(message)
            return
        is_body = message["type"] == "http.response.body"
        if is_body:
            held.append(message)
        body = b"".join(part.get("body", b"") for part in held[1:])
        more_body = bool(held[-1].get("more_body", False)) if len(held) > 1 else True
        if is_body and more_body and len(body) <= policy.hash_max_bytes:
            return
        start = held[0]
        headers: list[tuple[bytes, bytes]] = start["headers"]
        present = {name.lower() for name, _ in headers}
        compiled = policy.compiled("html", https=https)
        if is_body and not more_body and len(body) <= policy.hash_max_bytes:
            compiled = self._with_script_hashes(policy, compiled, body, https)
        else:
            _logger.warning("csp_hash_skipped", reason="page too large or streamed", size=len(body))
        _apply(headers, present, policy, compiled, nonce)
        held.clear()
        await send(start)
        if body or is_body:
            await send({"type": "http.response.body", "body": body, "more_body": more_body})
        if not is_body:
            await send(message)

    def _with_script_hashes(
        self, policy: HeaderPolicy, compiled: CompiledHeaders, body: bytes, https: bool
    ) -> CompiledHeaders:
        hashes = tuple(
            b"'sha256-" + base64.b64encode(hashlib.sha256(script).digest()) + b"'"
            for script in _INLINE_SCRIPT.findall(body)
        )
        csp = policy.csp_for("html")
        if not hashes or csp is None:
            return compiled
        key = (id(policy), https, hashes)
        parts = self._hashed_csp.get(key)
        if parts is None:
            sources = [value.decode("ascii") for value in hashes]
            extended = csp.with_sources(script_src=sources)
            if extended.sources("script-src-elem"):
                extended = extended.with_sources(script_src_elem=sources)
            parts = extended.template(https=https)
            if len(self._hashed_csp) >= _MAX_HASHED_POLICIES:
                self._hashed_csp.clear()
            self._hashed_csp[key] = parts
        return CompiledHeaders(compiled.static, compiled.csp_name, parts)


def _without_leaks(
    raw_headers: object, policy: HeaderPolicy
) -> tuple[list[tuple[bytes, bytes]], Kind, set[bytes]]:
    """Return the app's headers minus leaking ones, the response kind, the names present."""
    remove = policy.remove_headers_encoded
    headers: list[tuple[bytes, bytes]] = []
    present: set[bytes] = set()
    kind: Kind = "api"
    for name, value in raw_headers:  # type: ignore[attr-defined]
        lowered = name.lower()
        if lowered in remove:
            continue
        if lowered == b"content-type" and value.lower().startswith(_HTML_TYPES):
            kind = "html"
        present.add(lowered)
        headers.append((name, value))
    return headers, kind, present


def _apply(
    headers: list[tuple[bytes, bytes]],
    present: set[bytes],
    policy: HeaderPolicy,
    compiled: CompiledHeaders,
    nonce: RequestHeaderState,
) -> None:
    """Add the compiled headers to ``headers`` (in place), respecting what the app set."""
    parts = compiled.csp_parts
    name = compiled.csp_name
    if present.isdisjoint(compiled.names):
        headers.extend(compiled.static)  # the usual case: the app set none of them
    else:
        keep = policy.keep_app_headers
        for static_name, value in compiled.static:
            if static_name in present:
                # Caching is the application's call; it always keeps its own Cache-Control.
                if keep or static_name == _CACHE_CONTROL:
                    continue
                headers[:] = [item for item in headers if item[0].lower() != static_name]
            headers.append((static_name, value))
        if parts is not None and name in present:
            if keep:
                return
            headers[:] = [item for item in headers if item[0].lower() != name]
    if parts is None:
        return
    # Only a CSP with a nonce source (the HTML one, by default) draws the nonce.
    value = nonce.nonce.encode("ascii").join(parts) if len(parts) > 1 else parts[0]
    headers.append((name, value))
