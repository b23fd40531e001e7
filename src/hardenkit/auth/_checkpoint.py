"""The check at the endpoint: the route that serves a request is the one auth judged.

:class:`~hardenkit.auth.middleware.AuthMiddleware` runs before the request is routed: it
predicts the route (``hardenkit._routes.serving_route``) to know whether it is public
and which tenant its path names. Whatever routes otherwise than predicted - a
middleware inside the stack that rewrites the path (a trailing-slash stripper), a
``Router`` subclass, a FastAPI release that selects included routes otherwise - would
reach a handler auth never judged: a protected route let through as public, another
tenant's path with no binding.

So every endpoint the app's routes lead to is wrapped (``route.app``, which Starlette,
FastAPI and their mounts call with the exact scope the handler gets) in a
:class:`CheckedEndpoint`. AuthMiddleware leaves its :class:`Verdict` in a context
variable (:data:`verdicts_var`: a middleware that rebuilds the scope cannot drop it, and
an app mounted inside another, each with its own ``install()``, adds its own); the guard
holds the route actually reached to every verdict, before the handler, its dependencies
or its background tasks run: a protected route reached without a credential is ``401``,
a bound tenant path parameter that is not the principal's tenant ``403``. A request that
no verdict came with (auth off, ``report_only``, a route reached without AuthMiddleware)
passes untouched.

A path (or root path) that reaches the endpoint changed since auth judged it was
rewritten inside the stack, where the layers above the rewrite judged it as sent too:
that is said once per AuthMiddleware, as an error naming the cure, and the layers that
noted another path than the one served are asked again (:func:`hardenkit._late.
rechecked`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterable, Sized
from contextvars import ContextVar, Token
from re import Pattern

import structlog
from starlette.routing import Host, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardenkit._late import (
    JUDGED_KEY,
    endpoint_reached,
    judged_elsewhere,
    rechecked,
    run_late_checks,
)
from hardenkit._marks import PUBLIC, marks_of
from hardenkit._paths import PathPatterns, route_path
from hardenkit._routes import endpoint_of, iter_routes, mounted_routes
from hardenkit.auth._refusal import AuthRefusedError, unauthenticated
from hardenkit.auth._route_params import owned_route_lists
from hardenkit.auth.errors import RefusalReason, TokenRejectedError
from hardenkit.auth.principal import Principal
from hardenkit.context import principal_var

__all__ = [
    "CheckedEndpoint",
    "CheckedMount",
    "Checkpoints",
    "Judge",
    "Verdict",
    "judged",
    "verdicts_var",
]

_logger = structlog.get_logger("hardenkit.auth")


class Judge:
    """One AuthMiddleware's rules, for its endpoints to hold requests to.

    Args:
        public_paths: The public path patterns (a route reached under one is public).
        routed_mismatch: Judges the routed tenant path parameters against a principal.
        refuse: Sends a refusal (audited and counted as AuthMiddleware's own).
        authenticate: AuthMiddleware's own authentication of a request (token or API key
            by the app path given), bound to its tenant; raises its refusal.
        api_key_paths: The paths that take an API key instead of a token.

    The methods take the **app path** reached: the path the app's router served, below
    the root path where auth judged (see :meth:`_Checked.app_path`).
    """

    __slots__ = (
        "api_key_paths",
        "authenticate",
        "public_paths",
        "refuse",
        "rewrite_noticed",
        "routed_mismatch",
    )

    def __init__(
        self,
        public_paths: PathPatterns,
        routed_mismatch: Callable[[Scope, Principal], AuthRefusedError | None],
        refuse: Callable[[Send, Scope, AuthRefusedError], Awaitable[None]],
        authenticate: Callable[[Scope, str], Awaitable[tuple[Principal, Scope]]],
        api_key_paths: PathPatterns,
    ) -> None:
        self.api_key_paths = api_key_paths
        self.public_paths = public_paths
        self.routed_mismatch = routed_mismatch
        self.refuse = refuse
        self.authenticate = authenticate
        self.rewrite_noticed = False

    def notice_rewrite(self, judged: object, scope: Scope) -> None:
        """Say, once, that a middleware inside the stack changed the path after auth.

        Auth is held to the route reached, and the layers that noted another path are
        asked again for the path served (webhook signatures, rate limits); body limits,
        timeouts for a path and exempt paths stay as judged. Nothing refuses the request
        (the rewrite may be the app's own trailing-slash rule); the cure is to add such
        a middleware after ``install()``, outside its layers.
        """
        if self.rewrite_noticed:
            return
        self.rewrite_noticed = True
        _logger.error(
            "path_rewritten_inside_the_stack",
            judged_path=judged,
            reached_path=scope.get("path"),
            reached_root_path=scope.get("root_path", ""),
            detail="a middleware or router between hardenkit's layers and the endpoint "
            "changed the request path; webhook signatures and rate limits are checked "
            "again for the path reached, body limits, timeouts and exempt paths were "
            "judged on the path as sent. Add the middleware that rewrites paths after "
            "install(), so that it runs first (said once)",
        )

    async def authenticate_late(
        self, scope: Scope, send: Send, app_path: str
    ) -> tuple[Principal, Scope] | None:
        """Authenticate here a request judged public that reached a protected endpoint.

        The prediction took it for a public route (a rewrite inside the stack, say); the
        endpoint is not. The credential is checked now, as AuthMiddleware would have:
        the principal and the scope to serve it with, or ``None`` once refused (the
        refusal sent). A valid token is not turned away because the prediction missed,
        and none reaches the handler without one.
        """
        _logger.warning(
            "auth_checked_at_the_endpoint",
            path=scope.get("path"),
            detail="the request was judged public before routing, and a route that is not "
            "public serves it: authenticated at the endpoint",
        )
        try:
            principal, bound = await self.authenticate(scope, app_path)
        except AuthRefusedError as refused:
            await self.refuse(send, scope, refused)
            return None
        bound.setdefault("state", {})["principal"] = principal
        return principal, bound

    def refusal_for(
        self, scope: Scope, app_path: str, principal: Principal
    ) -> AuthRefusedError | None:
        """The refusal for ``principal`` at the route reached, if any.

        A credential of the wrong kind for it is ``401``; a routed tenant parameter that
        is not the principal's tenant is ``403``.
        """
        refusal = self._kind_mismatch(scope, app_path, principal)
        if refusal is None and scope.get("path_params"):
            refusal = self.routed_mismatch(scope, principal)
        return refusal

    def _kind_mismatch(
        self, scope: Scope, app_path: str, principal: Principal
    ) -> AuthRefusedError | None:
        """A ``401`` when the credential is not the kind the path reached asks for.

        API-key paths were chosen on the path as sent; a rewrite inside the stack may
        reach an API-key route with a token (or the reverse).
        """
        api_key_paths = self.api_key_paths
        if not api_key_paths:
            return None
        wants_key = api_key_paths.matches(app_path)
        if wants_key == (principal.credential == "api_key"):
            return None
        _logger.error(
            "auth_credential_kind_missed_the_route",
            path=scope.get("path"),
            detail="the credential was chosen on the path before routing, and the route "
            "reached asks for another kind; the request is refused",
        )
        reason = RefusalReason.MISSING_API_KEY if wants_key else RefusalReason.MISSING
        return unauthenticated(TokenRejectedError(reason, "missing"))

    def refusal_at(
        self, scope: Scope, principal: Principal | None, app_path: str, route_public: bool
    ) -> AuthRefusedError | None:
        """The refusal for a mount reached with ``scope``, if auth judged another route.

        A request judged public that reached a mount which is not gets ``401``: what
        the app inside will route it to cannot be told, so it is not authenticated late.
        """
        if principal is not None:
            return self.refusal_for(scope, app_path, principal)
        if route_public or self.public_paths.matches(app_path):
            return None
        _logger.error(
            "auth_skipped_for_a_protected_route",
            path=scope.get("path"),
            detail="the request was judged public before routing, and a route that "
            "is not public served it; it is refused",
        )
        return unauthenticated(TokenRejectedError(RefusalReason.MISSING, "missing"))


def _app_path(scope: Scope, root_path: str) -> str:
    """The path as it reached the endpoint (rewritten, maybe), below the app's root path.

    The root path is where AuthMiddleware judged it: a mount below adds to
    ``scope["root_path"]``, and the settings' paths are the app's.
    """
    return route_path({"path": scope.get("path", ""), "root_path": root_path})


Verdict = tuple[Judge, Principal | None, str, object, Scope]
"""What AuthMiddleware decided for one request: its judge, the bound principal (``None``
when let through as public), the app's ``root_path`` where it judged (public paths are
matched below it, however deep a mount the endpoint is), ``scope["path"]`` as it judged
it (a mount keeps the path; only a rewrite changes it), and the scope it passed on
(where the layers' notes are, should a middleware below rebuild the scope without
them). A tuple: made per request."""

verdicts_var: ContextVar[tuple[Verdict, ...]] = ContextVar("hardenkit_auth_verdicts", default=())
"""The verdicts of the AuthMiddleware layers serving the request, outermost first."""


def judged(verdict: Verdict) -> Token[tuple[Verdict, ...]]:
    """Add ``verdict`` for the endpoint to hold the request to; reset with the token."""
    return verdicts_var.set((*verdicts_var.get(), verdict))


class _Checked:
    """An endpoint's or a mount's app, and what the route table says of it.

    Whether it is marked ``@public()``, and the root paths the app's mounts give it
    (``prefixes``, as templates: ``""`` at the top, ``/m`` or ``/t/{tenant_id}`` below a
    mount; for a mount, its own path included).
    """

    __slots__ = ("_prefixes", "app", "public")

    def __init__(self, app: ASGIApp, *, public: bool, prefixes: Iterable[str] = ()) -> None:
        self.app = app
        self.public = public
        self._prefixes: dict[str, Pattern[str]] = {}
        for prefix in prefixes:
            self.add_prefix(prefix)

    def add_prefix(self, prefix: str) -> None:
        """One more way the app's routes lead here (a route mounted under two prefixes)."""
        if prefix not in self._prefixes:
            self._prefixes[prefix] = compile_path(prefix)[0] if prefix else _EMPTY

    def app_path(self, scope: Scope, root_path: str) -> tuple[str, bool]:
        """The path the app's router served, below ``root_path``; whether a root changed.

        Below auth, only the app's mounts add to ``scope["root_path"]``: one none of
        them explains was set by a middleware inside the stack (mounting the app
        at ``/api`` the ASGI way, which makes the router serve ``/x`` for ``/api/x``).
        Then the path served is what remains of ``scope["path"]`` below the part of that
        root path a mount explains, if any.
        """
        served_root: str = scope.get("root_path", "")
        if served_root == root_path:
            return route_path(scope), False  # what the layers derived already, kept
        consumed = served_root[len(root_path) :] if served_root.startswith(root_path) else None
        prefixes = self._prefixes.values()
        if consumed is not None and any(prefix.fullmatch(consumed) for prefix in prefixes):
            return _app_path(scope, root_path), False
        served = route_path(scope)
        start = served_root.find("/", 1)
        while start > 0:  # the mount's part of a root path a rewrite lengthened
            tail = served_root[start:]
            if any(prefix.fullmatch(tail) for prefix in prefixes):
                return tail + served, True
            start = served_root.find("/", start + 1)
        return served, True

    def verdicts_and_notes(self, scope: Scope) -> tuple[tuple[Verdict, ...], Scope]:
        """The verdicts to hold the request to (none: it passes), and the layers' notes.

        A layer that asked (:data:`hardenkit._late.ENDPOINT_KEY`) learns that an
        endpoint, or a mount, runs now.
        """
        verdicts = verdicts_var.get()
        notes = _notes_of(scope, verdicts) if verdicts else scope
        endpoint_reached(notes)
        return verdicts, notes

    def served_for(self, scope: Scope, verdict: Verdict) -> tuple[str, bool]:
        """The app path served, in ``verdict``'s terms, and whether it was rewritten.

        A rewrite is said once per AuthMiddleware.
        """
        judge, _, root_path, judged_path, _ = verdict
        app_path, root_changed = self.app_path(scope, root_path)
        if root_changed or scope.get("path") != judged_path:
            judge.notice_rewrite(judged_path, scope)
            return app_path, True
        return app_path, False

    def guarded_app(self, scope: Scope, notes: Scope, *, rewritten: bool) -> ASGIApp:
        """The app, behind the checks of the path served for layers that noted another.

        Looked for only then: a request pays one comparison per note.
        """
        if rewritten or judged_elsewhere(notes, scope.get("path")):
            return rechecked(notes, functools.partial(self.served_path, scope), self.app)
        return self.app

    def served_path(self, scope: Scope, root_path: str) -> str:
        """The path served, in the terms of a layer that judged below ``root_path``."""
        return self.app_path(scope, root_path)[0]


_EMPTY = re.compile("")


def _notes_of(scope: Scope, verdicts: tuple[Verdict, ...]) -> Scope:
    """Where the layers' notes are.

    ``scope``, or the scope the outermost auth passed on when a middleware below rebuilt
    the scope without them.
    """
    return scope if JUDGED_KEY in scope else verdicts[0][4]


class CheckedEndpoint(_Checked):
    """An endpoint's ASGI app, holding each request to AuthMiddleware's verdict first.

    Args:
        app: The route's app (what calls the handler).
        public: Whether the route's endpoint is marked ``@public()``.

    Every request with a verdict is checked, tenant parameters included, whatever the
    route's template: one route object may be mounted under several prefixes (one with a
    ``{tenant_id}``), and serve apps bound to different parameters.
    """

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request auth judged for another route; serve the rest."""
        verdicts, notes = self.verdicts_and_notes(scope)
        if not verdicts:
            await self.app(scope, receive, send)
            return
        late: Principal | None = None
        rewritten = False
        for verdict in verdicts:
            judge, judged_principal = verdict[0], verdict[1]
            app_path, moved = self.served_for(scope, verdict)
            rewritten = rewritten or moved
            principal = judged_principal or late
            if principal is None:
                if self.public or judge.public_paths.matches(app_path):
                    continue
                authenticated = await judge.authenticate_late(scope, send, app_path)
                if authenticated is None:
                    return
                late, scope = authenticated
                principal = late
            refusal = judge.refusal_for(scope, app_path, principal)
            if refusal is not None:
                await judge.refuse(send, scope, refusal)
                return
        app = self.guarded_app(scope, notes, rewritten=rewritten)
        if late is None:
            await app(scope, receive, send)
            return
        token = principal_var.set(late)
        try:
            # What the layers before left for want of a principal (the per-tenant
            # limit) is charged now, before the handler.
            if not await run_late_checks(scope, send, notes):
                await app(scope, receive, send)
        finally:
            principal_var.reset(token)


class CheckedMount(_Checked):
    """A mount whose app's routes cannot be seen (a plain ASGI app, an unknown wrapper).

    Its own path parameters are judged on arrival, as an endpoint's. What the app inside
    routes to is judged on its first ``receive`` (which raises) or ``send`` (replaced by
    the refusal), from the path parameters its router sets in the scope it was given:
    later than an endpoint's check (a handler that writes without reading the body has
    run), and blind to a router that routes a copy of the scope.

    Args:
        app: The mount's app.
        public: Whether the mounted app is marked ``@public()``.
    """

    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Judge the request at the mount, then what the app inside routed it to."""
        # Whatever the app inside answers, a handler may have run there: a webhook's own
        # redirect or 404 is not taken for the router's (its claim is kept).
        verdicts, notes = self.verdicts_and_notes(scope)
        if not verdicts:
            await self.app(scope, receive, send)
            return
        rewritten = False
        for verdict in verdicts:
            judge, principal = verdict[0], verdict[1]
            app_path, moved = self.served_for(scope, verdict)
            rewritten = rewritten or moved
            refusal = judge.refusal_at(scope, principal, app_path, self.public)
            if refusal is not None:
                await judge.refuse(send, scope, refusal)
                return
        app = self.guarded_app(scope, notes, rewritten=rewritten)
        judge, principal = verdicts[-1][0], verdicts[-1][1]
        state = _Inside(judge, principal, scope)

        async def receive_judged() -> Message:
            if state.refusal() is not None:
                raise _RefusedInsideError
            return await receive()

        async def send_judged(message: Message) -> None:
            refusal = state.refusal()
            if refusal is None:
                state.started = True
                await send(message)
            elif not state.started:  # the app's own response is dropped
                state.started = state.refused = True
                await judge.refuse(send, scope, refusal)
            elif not state.refused:  # too late to answer: the server aborts the response
                raise _RefusedInsideError

        try:
            await app(scope, receive_judged, send_judged)
        except _RefusedInsideError:
            if state.refused:
                return
            refusal = state.refusal()
            if state.started or refusal is None:
                raise
            state.started = state.refused = True
            await judge.refuse(send, scope, refusal)


class _RefusedInsideError(Exception):
    """Raised into an app behind a :class:`CheckedMount` that routed to a refused tenant."""


class _Inside:
    __slots__ = ("_judge", "_principal", "_refusal", "_scope", "refused", "started")

    def __init__(self, judge: Judge, principal: Principal | None, scope: Scope) -> None:
        self._judge = judge
        self._principal = principal
        self._scope = scope
        self._refusal: AuthRefusedError | None = None
        self.started = False  # a response started: the app's or the refusal
        self.refused = False  # the refusal was sent

    def refusal(self) -> AuthRefusedError | None:
        """Judged again on every call until refused (the router sets its parameters late)."""
        if self._refusal is None and self._principal is not None:
            self._refusal = self._judge.routed_mismatch(self._scope, self._principal)
        return self._refusal


class Checkpoints:
    """Wraps every endpoint of an app once, and again those of routes added later.

    The route lists walked are watched by length, the app's own list by identity (as
    the route marks' table is), and each included FastAPI router by its routes version: a
    route added after the first request, a route list the app was given anew, or the
    contexts FastAPI builds anew for an included router (``APIRouter.frontend()`` after
    traffic) are guarded on the next request. A route replaced in place in
    a list of the same length is not noticed: add routes, do not swap them.
    """

    __slots__ = ("_app", "_top", "_watched")

    def __init__(self) -> None:
        self._app: object = None
        self._top: object = None
        self._watched: tuple[tuple[Sized, int], ...] = ()

    def ensure(self, scope: Scope) -> None:
        """Guard the endpoints of ``scope["app"]`` if not done since its routes changed."""
        app = scope.get("app")
        top = getattr(getattr(app, "router", None), "routes", None)
        if app is self._app and top is self._top:
            for routes, length in self._watched:
                if len(routes) != length:
                    break
            else:
                return
        self._watched = tuple(_guard(app))
        self._app = app
        self._top = top


def _guard(app: object) -> list[tuple[Sized, int]]:
    """Wrap every endpoint below ``app``'s routes; the route lists seen, with lengths."""
    lists = owned_route_lists(app)
    for info in iter_routes(app):
        route = info.route
        inner = getattr(route, "app", None)
        if inner is None:
            continue
        is_mount = isinstance(route, Mount | Host)
        # The root path the app's mounts give the endpoint (a mount: its own path too).
        own = "" if is_mount else str(getattr(route, "path", ""))
        prefix = info.path[: len(info.path) - len(own)] if info.path.endswith(own) else ""
        if isinstance(inner, _Checked):
            inner.add_prefix(prefix)  # also served below another mount
            continue
        guarded: CheckedEndpoint | CheckedMount
        public = PUBLIC in marks_of(endpoint_of(route))
        if is_mount:
            if mounted_routes(route) is not None:
                continue  # its routes are walked (and may be added later): not opaque
            guarded = CheckedMount(inner, public=public, prefixes=(prefix,))
        elif getattr(route, "endpoint", None) is not None:
            guarded = CheckedEndpoint(inner, public=public, prefixes=(prefix,))
        else:
            continue
        try:
            route.app = guarded
        except AttributeError:  # a route class whose app cannot be set: predicted only
            continue
    return [(routes, len(routes)) for routes in lists]
