"""Production rules that need the application's routes, not only the settings.

- A path parameter whose name says tenant (``tenant``, ``org``, ``organization``,
  ``workspace``, ``account``, ``team``, ``customer``, with ``_id``/``Id`` variants) that
  is neither bound (``HARDENKIT_TENANT_PATH_PARAMS``) nor declared not-a-tenant
  (``HARDENKIT_TENANT_UNBOUND_PARAMS``): a token of one tenant reads another's data.
  The same for a query parameter a FastAPI route declares (its alias, as clients send
  it) and ``HARDENKIT_TENANT_QUERY_PARAMS``, and for a top-level body field a FastAPI
  route declares (a body is never bound: the handler must take the principal's tenant).
- A public prefix (``/api/*``) over a route that needs the principal: one with a bound or
  tenant-named path parameter, a ``require_roles``/``require_scopes`` guard, or (FastAPI)
  a security scheme or a dependency returning the :class:`~hardenkit.auth.Principal`.
- A route marked ``@public()`` that needs the principal, by the same test: a public
  route is exactly as public as a path in ``HARDENKIT_PUBLIC_PATHS``.
- A ``@limit(...)`` above the route decorator: the route serves the function without
  its limit (refused in every environment: it is a bug, never a choice).
- A route limit counted per verified caller (``keys.tenant``, ``keys.subject``...) on a
  route served without credentials (``@public()``, ``HARDENKIT_PUBLIC_PATHS``, auth off):
  no caller is verified there, so the limit would count no one (refused everywhere).
- ``@require_roles(...)``/``@require_scopes(...)`` as a decorator on a FastAPI route: the
  guard takes the request as its first argument, which FastAPI never passes (refused
  everywhere; FastAPI takes it as a dependency).
- No auth paths while a login or token route exists, or a login route outside the auth
  paths or inside the rate-limit exempt paths (or marked ``@exempt()``): the strict login
  limit is off for it.

``install()`` runs them on the routes it can see, again when the app starts (lifespan),
or on the first request when the server runs no lifespan; ``hardenkit doctor --app`` runs
them too. Problems go through the same policy as the settings' own (see
:mod:`hardenkit._settings.policy`).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, get_args

from starlette.routing import WebSocketRoute, compile_path

from hardenkit._marks import EXEMPT, PUBLIC, is_limited_original, marks_of
from hardenkit._paths import PathPatterns
from hardenkit._risks import risk_problem
from hardenkit._routes import RouteInfo, effective_route, iter_routes
from hardenkit._section import SettingProblem
from hardenkit._settings.requests import REQUEST_TIMEOUT_CAP
from hardenkit.auth._guard import EndpointGuard
from hardenkit.health import HealthRegistry
from hardenkit.ratelimit.keys import needs_principal

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["app_problems", "is_tenant_name"]

_TENANT_NAME = re.compile(
    r"(?:x[_-]*|current[_-]*)?"
    r"(?:tenants?|orgs?|organi[sz]ations?|workspaces?|accounts?|teams?|customers?)"
    r"(?:[_-]*(?:id|uuid|slug|name|key|ref|code|identifier)s?)?"
    r"|tid",  # Microsoft Entra's tenant claim, as a parameter name
    re.IGNORECASE,
)
_LOGIN_SEGMENT = re.compile(
    r"/(login|log-in|signin|sign-in|sign_in|token|oauth2?/token|authenticate|sessions?"
    # One-time codes and password resets are guessed like passwords (6 digits at the
    # default rate of 100 per 15 min fall in days).
    r"|mfa|2fa|otp|totp|password[-_]?reset|reset[-_]?password|forgot[-_]?password)(/|$)",
    re.IGNORECASE,
)
_MAX_LISTED = 5
_MAX_DEPENDANTS = 1000
_MAX_TYPE_DEPTH = 4


def is_tenant_name(name: str) -> bool:
    """Whether a parameter named ``name`` reads as a tenant id."""
    return _TENANT_NAME.fullmatch(name) is not None


def app_problems(
    settings: HardenSettings, app: Any, *, complete: bool = True
) -> list[SettingProblem]:
    """Return the rule violations ``app``'s routes show under ``settings``.

    ``complete=False`` while routes may still be added: a route that should exist may
    yet come, so its absence is not judged.
    """
    routes = list(iter_routes(app))
    misplaced = [
        *_misplaced_limit_problems(routes),
        *_websocket_limit_problems(routes),
        *_uncounted_limit_problems(settings, routes),
        *_guard_decorator_problems(routes),
        *_sync_webhook_problems(settings, routes),
        *(_unserved_webhook_problems(settings, routes) if complete else ()),
        *_shadowed_route_problems(settings, routes),
        *_broad_exempt_problems(settings, routes),
        *_broad_untimed_problems(settings, routes),
        *_shared_mark_problems(routes, EXEMPT, settings.rate_limit_exempt_paths),
    ]
    if settings.auth_mode == "off":
        return misplaced  # refused on its own; nothing below means anything without auth
    return [
        *misplaced,
        *_unbound_tenant_problems(settings, routes),
        *_public_prefix_problems(settings, routes),
        *_public_route_problems(settings, routes),
        *_guarded_webhook_problems(settings, routes),
        *(_unserved_public_problems(settings, routes) if complete else ()),
        *_shared_mark_problems(routes, PUBLIC, settings.public_paths),
        *_login_problems(settings, routes),
    ]


def _is_probe(route: RouteInfo) -> bool:
    """Whether ``route`` is one of the health probes ``install()`` added."""
    return isinstance(getattr(route.endpoint, "__self__", None), HealthRegistry)


def _is_public(settings: HardenSettings, public_paths: PathPatterns, route: RouteInfo) -> bool:
    """Whether ``route`` is reached without a credential (auth off, ``@public``, a public path)."""
    return (
        settings.auth_mode == "off"
        or PUBLIC in marks_of(route.endpoint)
        or public_paths.matches(route.path)
    )


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _unbound_tenant_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    declared = set(settings.tenant_unbound_params)
    # Header names compare as HTTP does: any case; and as auth reads them, `_` as `-`
    # (FastAPI's x_org_id is x-org-id; Header(convert_underscores=False) keeps x_org_id).
    headers = {
        _header_key(name) for name in (settings.tenant_header, *settings.tenant_header_aliases)
    }
    unbound: dict[tuple[str, str], list[str]] = {}
    for route in routes:
        declared_headers = [
            name
            for name in _declared_params(route, "header_params")
            if _header_key(name) not in headers
        ]
        for kind, names, bound in (
            ("path", route.params, settings.tenant_path_params),
            ("query", _declared_params(route, "query_params"), settings.tenant_query_params),
            ("header", declared_headers, ()),
            ("cookie", _declared_params(route, "cookie_params"), ()),
            ("body", _body_fields(route), ()),
        ):
            for name in names:
                if is_tenant_name(name) and name not in bound and name not in declared:
                    paths = unbound.setdefault((kind, name), [])
                    if route.path not in paths:  # one route may read a name twice
                        paths.append(route.path)
    return [_unbound_problem(kind, name, paths) for (kind, name), paths in sorted(unbound.items())]


def _header_key(name: str) -> str:
    return name.lower().replace("_", "-")


def _unbound_problem(kind: str, name: str, paths: list[str]) -> SettingProblem:
    if kind in ("body", "cookie"):
        # Nothing reads a body before the handler, and cookies are the client's to set:
        # neither can be bound, only taken from the principal instead.
        what = "body field" if kind == "body" else "cookie"
        where = "a request body" if kind == "body" else "a cookie"
        return SettingProblem(
            "HARDENKIT_TENANT_UNBOUND_PARAMS",
            f"{what} {name!r} ({_listed(paths)}) names a tenant, and {where} is "
            "never checked against the token's tenant: a caller of one tenant writes "
            "another's",
            fix="take the tenant from the verified principal (`principal.tenant`), or list "
            f"{name} in HARDENKIT_TENANT_UNBOUND_PARAMS once the handler checks it",
        )
    if kind == "header":
        # A header is bound by being the tenant header's alias: checked, then overwritten.
        return SettingProblem(
            "HARDENKIT_TENANT_HEADER_ALIASES",
            f"header {name!r} ({_listed(paths)}) names a tenant but is not checked against "
            "the token's tenant: a caller of one tenant reaches another's data",
            fix=f"add {name} to HARDENKIT_TENANT_HEADER_ALIASES, or list it in "
            "HARDENKIT_TENANT_UNBOUND_PARAMS if it is not a tenant id",
        )
    setting = f"HARDENKIT_TENANT_{kind.upper()}_PARAMS"
    return SettingProblem(
        setting,
        f"{kind} parameter {name!r} ({_listed(paths)}) names a tenant but is not "
        "checked against the token's tenant: a caller of one tenant reaches another's "
        "data",
        fix=f"add {name} to {setting}, or to HARDENKIT_TENANT_UNBOUND_PARAMS if it is not "
        "a tenant id",
    )


def _dependants(route: RouteInfo) -> list[Any]:
    """A FastAPI route's dependant and every sub-dependency's (none for Starlette)."""
    original = getattr(route.route, "original_route", route.route)
    dependant = getattr(original, "dependant", None)
    found: list[Any] = []
    pending = [dependant] if dependant is not None else []
    while pending and len(found) < _MAX_DEPENDANTS:
        current = pending.pop()
        found.append(current)
        pending.extend(getattr(current, "dependencies", ()))
    return found


def _declared_params(route: RouteInfo, kind: str) -> list[str]:
    """Parameters of ``kind`` a FastAPI route declares, by every name clients may send.

    FastAPI reads a parameter under its ``validation_alias`` (each of ``AliasChoices``)
    or its alias. A parameter model (``f: Annotated[Filters, Query()]``, optional or in a
    union too) is read field by field, each under those names, and under the field's own
    name when the model populates by name; a header model's fields with ``_`` turned
    into ``-``, as FastAPI does.
    """
    names: list[str] = []
    for dependant in _dependants(route):
        for param in getattr(dependant, kind, ()):
            info = getattr(param, "field_info", None)
            names += _client_names(param.name, getattr(param, "alias", None), info)
            dashed = bool(getattr(info, "convert_underscores", False))
            for model in _models_in(getattr(info, "annotation", None)):
                names += _model_field_names(model, dashed=dashed)
    return names


def _body_fields(route: RouteInfo) -> list[str]:
    """Top-level body fields a FastAPI route declares: a model's fields, or embedded ones."""
    names: list[str] = []
    for dependant in _dependants(route):
        for param in getattr(dependant, "body_params", ()):
            info = getattr(param, "field_info", None)
            models = _models_in(getattr(info, "annotation", None))
            if models:
                for model in models:
                    names += _model_field_names(model, dashed=False)
            else:
                names += _client_names(param.name, getattr(param, "alias", None), info)
    return names


def _client_names(name: str, alias: object, info: object) -> list[str]:
    """The names FastAPI reads one parameter or field under (its validation alias first)."""
    names = [str(alias or name)]
    validation_alias = getattr(info, "validation_alias", None)
    if isinstance(validation_alias, str):
        names.append(validation_alias)
    for choice in getattr(validation_alias, "choices", ()):
        # AliasChoices: each a name, or an AliasPath whose first element is the name.
        first = choice if isinstance(choice, str) else next(iter(getattr(choice, "path", [])), None)
        if isinstance(first, str):
            names.append(first)
    return names


def _models_in(annotation: object, depth: int = 0) -> list[type]:
    """The pydantic models an annotation reads (``Model``, ``Model | None``, unions)."""
    if isinstance(getattr(annotation, "model_fields", None), dict):
        return [annotation]  # type: ignore[list-item]
    if depth > _MAX_TYPE_DEPTH:
        return []
    return [model for arg in get_args(annotation) for model in _models_in(arg, depth + 1)]


def _model_field_names(model: type, *, dashed: bool) -> list[str]:
    config = getattr(model, "model_config", {})
    by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
    names: list[str] = []
    for name, field in getattr(model, "model_fields", {}).items():
        default = name.replace("_", "-") if dashed else name
        names += _client_names(default, field.alias, field)
        if by_name and field.alias:
            names.append(default)
    return names


def _public_prefix_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    problems = []
    bound = set(settings.tenant_path_params)
    for pattern in settings.public_paths:
        if not pattern.endswith("*") or pattern in ("/*", "*"):
            continue  # exact paths are deliberate; `/*` is its own risk
        patterns = PathPatterns([pattern])
        protected = [
            route.path
            for route in routes
            if patterns.matches(route.path) and _needs_principal(route, bound)
        ]
        if protected:
            problems.append(
                risk_problem(
                    "public-paths-protected-prefix",
                    f"{pattern} makes routes that need a verified caller public "
                    f"({_listed(protected)}): they run without a token, and tenant binding "
                    "is skipped",
                    "list the public routes one by one",
                )
            )
    return problems


def _misplaced_limit_problems(routes: Sequence[RouteInfo]) -> list[SettingProblem]:
    unlimited = [route.path for route in routes if is_limited_original(route.endpoint)]
    if not unlimited:
        return []
    return [
        SettingProblem(
            "hardenkit.fastapi.limit",
            f"@limit(...) is above the route decorator on {_listed(unlimited)}: the route "
            "serves the function without its limit",
            production_only=False,
            fix="put @limit(...) below @app.get(...)/@router.post(...)",
        )
    ]


def _websocket_limit_problems(routes: Sequence[RouteInfo]) -> list[SettingProblem]:
    """A route limit on a WebSocket route: FastAPI passes it no request, every call fails."""
    limited = [
        route.path
        for route in routes
        if isinstance(effective_route(route.route), WebSocketRoute) and _route_limit_keys(route)
    ]
    if not limited:
        return []
    return [
        SettingProblem(
            "hardenkit.fastapi.limit",
            f"limit() is on the WebSocket routes {_listed(limited)}: FastAPI gives a "
            "WebSocket dependency no Request, so every handshake would be answered 500",
            production_only=False,
            fix="take it off: the stack's rules (per ip, per tenant) count each handshake",
        )
    ]


def _uncounted_limit_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    public_paths = PathPatterns(settings.public_paths)
    uncounted = [
        route.path
        for route in routes
        if _is_public(settings, public_paths, route)
        and any(needs_principal(key) for key in _route_limit_keys(route))
    ]
    if not uncounted:
        return []
    return [
        SettingProblem(
            "hardenkit.fastapi.limit",
            f"a limit keyed on the verified caller (keys.tenant, keys.subject, "
            f"keys.api_key) is on {_listed(uncounted)}, served without credentials: no "
            "caller is verified there, so the limit would count no one",
            production_only=False,
            fix="key it on the client: limit(..., key=keys.client_ip) (the default), or "
            "make the route protected",
        )
    ]


def _route_limit_keys(route: RouteInfo) -> list[Any]:
    """The ``key`` of each route limit among a FastAPI route's dependencies.

    Read by attribute, not by class: this layer does not import ``hardenkit.fastapi``.
    """
    return [
        getattr(dependency.call, "key", None)
        for dependant in _dependants(route)
        for dependency in getattr(dependant, "dependencies", ())
        if callable(getattr(getattr(dependency, "call", None), "key", None))
    ]


def _guard_decorator_problems(routes: Sequence[RouteInfo]) -> list[SettingProblem]:
    decorated = [
        route.path
        for route in routes
        if isinstance(getattr(route.endpoint, "hardenkit_guard", None), EndpointGuard)
        and _dependants(route)
    ]
    if not decorated:
        return []
    return [
        SettingProblem(
            "hardenkit.require_roles",
            f"@require_roles(...)/@require_scopes(...) decorates the FastAPI routes "
            f"{_listed(decorated)}: FastAPI does not pass the request the guard checks, so "
            "every call would fail",
            production_only=False,
            fix="take it as a dependency: `principal: Principal = "
            'Depends(require_roles("admin"))` or `dependencies=[Depends(require_roles(...))]`',
        )
    ]


def _sync_webhook_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    patterns = settings.verified_webhook_paths
    if not patterns:
        return []
    listed = PathPatterns(patterns)
    synchronous = [
        route.path
        for route in routes
        if _may_serve(route, patterns, listed) and _runs_in_thread(route)
    ]
    if not synchronous:
        return []
    return [
        risk_problem(
            "webhook-handler-sync",
            f"the webhook routes {_listed(synchronous)} are served by synchronous (`def`) "
            "handlers: they run in a thread that the request timeout cannot stop, so one "
            "that runs past its claim (the request timeout + 5 s, at least 60 s) is "
            "processed again beside the sender's retry",
            "write them `async def` (blocking work in `await anyio.to_thread.run_sync(...)` "
            "ends with the request, the thread's own run aside: keep it short)",
        )
    ]


def _shadowed_route_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    """An app route at a probe's path: the probe, added first, serves it instead."""
    problems = []
    for setting, path in (
        ("HARDENKIT_HEALTH_PATH", settings.health_path),
        ("HARDENKIT_READY_PATH", settings.ready_path),
    ):
        shadowed = [route.path for route in routes if route.path == path and not _is_probe(route)]
        if shadowed:
            problems.append(
                SettingProblem(
                    setting,
                    f"{path} is also a route of the app: the probe, public and never rate "
                    "limited, answers there and the app's route is never reached",
                    severity="warning",
                    production_only=False,
                    fix="give the probe a path of its own",
                )
            )
    return problems


def _broad_exempt_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    """An exempt prefix over protected routes, or over most of the app.

    ``*`` and ``/*`` are their own risk (``rate-limit-exempt-everything``). A prefix such
    as ``/api/*`` turns off the per-ip limit in front of auth (tokens guessed at any
    rate) and the per-tenant limit for every route under it. What exempt paths are for
    (assets, a metrics scrape) is one route, or public ones.
    """
    public_paths = PathPatterns(settings.public_paths)
    served = [route for route in routes if not _is_probe(route)]
    problems = []
    for pattern in settings.rate_limit_exempt_paths:
        if not pattern.endswith("*") or pattern in ("*", "/*"):
            continue
        exempt = PathPatterns([pattern])
        covered = [route for route in served if exempt.matches(route.path)]
        protected = [
            route.path for route in covered if not _is_public(settings, public_paths, route)
        ]
        if len(covered) < 2 or (len(protected) < 2 and 2 * len(covered) < len(served)):
            continue
        problems.append(
            SettingProblem(
                "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
                f"{pattern} exempts {len(covered)} of the app's {len(served)} routes "
                f"({_listed([route.path for route in covered])}) from every rate limit, "
                f"{len(protected)} of them behind auth: the per-ip limit in front of auth "
                "(tokens guessed at any rate) and the per-tenant limit are off there",
                severity="warning",
                production_only=False,
                fix="exempt the few routes that need it (or mark them @exempt())",
            )
        )
    return problems


# A prefix over more routes than this is more than the streams it is meant for.
_MOST_STREAMING_ROUTES: Final = 2


def _broad_untimed_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    """Prefixes taking the request timeout off (or past its cap) for more than streams.

    ``*`` and ``/*`` are their own risks. ``/tenants/*`` in ``HARDENKIT_STREAMING_PATHS``
    (or a one-day budget for it) takes the timeout off a whole API: a stuck handler holds
    its connection for ever, with nothing said. Streams are a route or two, and SSE and
    WebSockets are exempt anyway (WebSocket routes are not counted). The HTTP routes all
    of a setting's prefixes cover together are counted: ten prefixes of one route each
    are ten routes. Exact paths are chosen one by one and never warned about.
    """
    served = [
        route
        for route in routes
        if not _is_probe(route) and not isinstance(route.route, WebSocketRoute)
    ]
    long = [
        pattern
        for pattern, seconds in settings.request_timeout_routes.items()
        if seconds > REQUEST_TIMEOUT_CAP
    ]
    untimed = [
        ("HARDENKIT_STREAMING_PATHS", settings.streaming_paths, "take the request timeout off"),
        (
            "HARDENKIT_REQUEST_TIMEOUT_ROUTES",
            long,
            f"lift the request timeout past {REQUEST_TIMEOUT_CAP:g} s for",
        ),
    ]
    problems = []
    for setting, patterns, what in untimed:
        prefixes = [p for p in patterns if p.endswith("*") and p not in ("*", "/*")]
        if not prefixes:
            continue
        matches = PathPatterns(prefixes).matches
        covered = [route.path for route in served if matches(route.path)]
        if len(covered) <= _MOST_STREAMING_ROUTES:
            continue
        problems.append(
            SettingProblem(
                setting,
                f"{', '.join(prefixes)} {what} {len(covered)} of the app's {len(served)} "
                f"HTTP routes ({_listed(covered)}): a stuck handler there holds its "
                "connection, and what it locked, for as long as it hangs",
                severity="warning",
                production_only=False,
                fix="list the streaming routes one by one (SSE and WebSockets are exempt anyway)",
            )
        )
    return problems


_MARK_SETTINGS: Final = {
    PUBLIC: "HARDENKIT_PUBLIC_PATHS",
    EXEMPT: "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
}


def _shared_mark_problems(
    routes: Sequence[RouteInfo], mark: str, listed: Sequence[str]
) -> list[SettingProblem]:
    """A marked function that serves more than one path: each of them is marked.

    ``@public()`` and ``@exempt()`` mark the function, not the route, so a handler reused
    at another path (``public()(status)`` at ``/status``, ``status`` at
    ``/admin/status``) is public or exempt there too. A warning: one function at several
    paths, all meant public (a router included under ``/v1`` and ``/v2``), is
    legitimate: listing every path it serves in the setting says so, and ends the
    warning (listing one is no answer: round 15 listed the path meant and left the
    other public). A trailing slash is the same path.
    """
    setting = _MARK_SETTINGS[mark]
    patterns = PathPatterns(listed)
    paths: dict[Any, list[str]] = {}
    for route in routes:
        if mark not in marks_of(route.endpoint):
            continue
        function = _unwrapped(route.endpoint)
        served = paths.setdefault(getattr(function, "__func__", function), [])
        if not any(path.rstrip("/") == route.path.rstrip("/") for path in served):
            served.append(route.path)
    problems = []
    for function, served in paths.items():
        by_mark_alone = [path for path in served if not patterns.matches(path)]
        if len(served) < 2 or not by_mark_alone:
            continue
        problems.append(
            SettingProblem(
                setting,
                f"@{mark}() marks the function {_name(function)}, not a route: every path "
                f"it serves ({_listed(served)}) is {mark}, "
                f"{_listed(by_mark_alone)} by the mark alone",
                severity="warning",
                production_only=False,
                fix=f"give the routes that must not be {mark} a function of their own, or "
                f"list every path it serves, exactly, in {setting}",
            )
        )
    return problems


def _name(function: Any) -> str:
    return str(getattr(function, "__qualname__", None) or type(function).__qualname__)


def _unserved_webhook_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    """Webhook paths no route serves: the signature check guards nothing.

    The usual cause is a path written without the prefix a router adds
    (``/webhooks/*`` for routes at ``/api/v1/webhooks/...``) or with the root path: the
    real webhook routes are then served unverified (a new-user review: a forged delivery
    got a 200 in production). Judged on the complete app only.
    """
    # Matched as the webhook layer matches: any case, a trailing slash or not (a router
    # prefix /webhooks/stripe with @router.post("/") serves /webhooks/stripe/).
    unserved = [
        pattern
        for pattern in settings.verified_webhook_paths
        if not any(_serves_any_spelling(route, pattern) for route in routes)
    ]
    if not unserved or not routes:
        return []
    return [
        risk_problem(
            "webhook-path-unserved",
            f"no route serves {_listed(unserved)}: deliveries there are never verified, and "
            "a webhook route at another path is served unsigned",
            "write each path as the app routes it (with any router prefix, without the root path)",
        )
    ]


def _serves_any_spelling(route: RouteInfo, pattern: str) -> bool:
    """Whether ``route`` serves ``pattern`` in any case, with a trailing slash or not.

    As the webhook layer matches its paths; a public path that misses a route only so
    is named as a near miss.
    """
    return _may_serve(route, [pattern], PathPatterns([pattern], any_case=True), any_case=True)


def _may_serve(
    route: RouteInfo, patterns: Sequence[str], listed: PathPatterns, *, any_case: bool = False
) -> bool:
    """Whether ``route`` may serve a path among ``patterns``.

    By the template as written (``/hooks/{name}`` under ``/hooks/*``), and by what the
    template matches: ``/hooks/{name}`` serves the webhook path ``/hooks/github``, a
    ``Mount("/hooks", app=...)`` everything below it. ``any_case``: in any letter case,
    with a trailing slash or without, as the webhook layer matches.
    """
    if listed.matches(route.path):
        return True
    templates = [route.path]
    if _mounted_app(route) is not None:
        templates.append(route.path.rstrip("/") + "/{rest:path}")
    flags = re.IGNORECASE if any_case else 0
    regexes = [re.compile(compile_path(template)[0].pattern, flags) for template in templates]
    probes = [
        probe
        for pattern in patterns
        for probe in (
            (pattern,)
            if not pattern.endswith("*")
            else (pattern[:-1] + "x", pattern[:-1].rstrip("/") or "/")
        )
    ]
    if any_case:
        probes += [
            probe.rstrip("/") if probe.endswith("/") else probe + "/"
            for probe in probes
            if probe != "/"
        ]
    return any(regex.match(probe) for regex in regexes for probe in probes)


def _unserved_public_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    """Public paths no route serves: they open nothing, and the route meant stays closed.

    Fails closed (the route answers 401), so a warning: a new-user review wrote
    ``/status/`` for ``/status`` and ``/billing/status`` under ``--root-path /billing``,
    and met 401s with nothing said.
    """
    # The default list names the probes' default paths, which need no route of the app's.
    default = type(settings).model_fields["public_paths"].get_default(call_default_factory=True)
    unserved = [
        pattern
        for pattern in settings.public_paths
        if pattern not in ("*", "/*")
        and pattern not in default
        and not any(_may_serve(route, [pattern], PathPatterns([pattern])) for route in routes)
    ]
    if not unserved or not routes:
        return []
    # A route it misses by a letter's case or a trailing slash: most likely the one meant.
    near = [
        route.path
        for pattern in unserved
        for route in routes
        if _serves_any_spelling(route, pattern)
    ]
    hint = f" (routes near it: {_listed(sorted(set(near)))})" if near else ""
    return [
        SettingProblem(
            "HARDENKIT_PUBLIC_PATHS",
            f"no route serves {_listed(unserved)}{hint}: it makes nothing public, and a "
            "route meant by it still needs a token",
            severity="warning",
            production_only=False,
            fix="write each path as the app routes it (with any router prefix, without the "
            "root path, with the route's own trailing slash or none)",
        )
    ]


def _guarded_webhook_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    """Webhook routes auth guards: it answers 401 before a delivery's signature is checked.

    Senders carry a signature, not a bearer token. Judged per route serving a webhook
    path, found as the webhook layer finds it (any case, a trailing slash or not), on
    the path a delivery reaches it at, matched as auth matches public paths: exactly. A
    new-user review listed ``/webhooks/stripe`` in both settings for a route at
    ``/webhooks/stripe/`` (a router prefix with ``@router.post("/")``): the setting
    strings agreed, and every signed delivery got 401.
    """
    public = PathPatterns(settings.public_paths)
    guarded: list[str] = []
    for pattern in settings.webhook_paths:
        for route in routes:
            if not _serves_any_spelling(route, pattern):
                continue
            reached_at = _delivery_path(route, pattern)
            if PUBLIC in marks_of(route.endpoint) or public.matches(reached_at):
                continue
            if reached_at not in guarded:
                guarded.append(reached_at)
    if not guarded:
        return []
    return [
        SettingProblem(
            "HARDENKIT_WEBHOOK_PATHS",
            f"the webhook routes {_listed(guarded)} need a token: auth answers 401 to "
            "deliveries before their signature is checked",
            severity="warning",
            production_only=False,
            fix="list each in HARDENKIT_PUBLIC_PATHS as the route is written (its trailing "
            "slash or none), or mark its endpoint @public()",
        )
    ]


def _delivery_path(route: RouteInfo, pattern: str) -> str:
    """The path a delivery under ``pattern`` reaches ``route`` at, as auth sees it.

    The route's own path where it has no parameters (the router answers there, or
    redirects to it); else the webhook path itself when exact; else the template.
    """
    if not route.params and _mounted_app(route) is None:
        return route.path
    if not pattern.endswith("*"):
        return pattern
    return route.path


def _mounted_app(route: RouteInfo) -> Any:
    """The app of a ``Mount`` without routes of its own (a sub-application), if any."""
    app = getattr(route.route, "app", None)
    return app if route.endpoint is None and app is not None else None


def _runs_in_thread(route: RouteInfo) -> bool:
    """Whether Starlette or FastAPI runs ``route``'s handler in a worker thread.

    A plain ``def`` (a function, a method, a ``partial`` of one); a class endpoint
    (``HTTPEndpoint``) with any plain method handler; on a FastAPI route, any callable
    whose call is not a coroutine function (FastAPI runs those in a thread, where
    Starlette takes a callable object for an ASGI app); a WSGI application mounted
    with ``WSGIMiddleware``.
    """
    endpoint = route.endpoint
    if endpoint is None:
        mounted = _mounted_app(route)
        return mounted is not None and type(mounted).__name__ == "WSGIMiddleware"
    if inspect.isclass(endpoint):
        handlers = [
            getattr(endpoint, method.lower(), None)
            for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        ]
        return any(handler is not None and _plain_function(handler) for handler in handlers)
    if _plain_function(endpoint):
        return True
    original = getattr(route.route, "original_route", route.route)
    if getattr(original, "dependant", None) is not None:  # FastAPI checks its __call__
        call = _unwrapped(endpoint)
        return not (
            inspect.iscoroutinefunction(call)
            or (callable(call) and inspect.iscoroutinefunction(call.__call__))
        )
    return False


def _unwrapped(handler: Any) -> Any:
    """What a ``functools.partial`` (of a partial...) calls, as Starlette and FastAPI look."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    return handler


def _plain_function(handler: Any) -> bool:
    handler = _unwrapped(handler)
    return (inspect.isfunction(handler) or inspect.ismethod(handler)) and not (
        inspect.iscoroutinefunction(handler)
    )


def _public_route_problems(
    settings: HardenSettings, routes: Sequence[RouteInfo]
) -> list[SettingProblem]:
    bound = set(settings.tenant_path_params)
    protected = [
        route.path
        for route in routes
        if PUBLIC in marks_of(route.endpoint) and _needs_principal(route, bound)
    ]
    if not protected:
        return []
    return [
        risk_problem(
            "public-route-protected",
            f"@public() is on routes that need a verified caller ({_listed(protected)}): "
            "they run without a token, and tenant binding is skipped",
            "remove @public() from them",
        )
    ]


def _login_problems(settings: HardenSettings, routes: Sequence[RouteInfo]) -> list[SettingProblem]:
    logins = [route.path for route in routes if _LOGIN_SEGMENT.search(route.path)]
    if not logins:
        return []
    if not settings.auth_paths:
        return [
            risk_problem(
                "auth-paths-empty",
                f"empty while {_listed(logins)} exist: passwords there are guessed at the "
                "default rate instead of HARDENKIT_RATE_LIMIT_AUTH",
                "list the login routes in HARDENKIT_AUTH_PATHS",
            )
        ]
    auth_paths = PathPatterns(settings.auth_paths)
    exempt = PathPatterns(settings.rate_limit_exempt_paths)
    outside = [path for path in logins if not auth_paths.matches(path)]
    # Exempting everything is its own risk (rate-limit-exempt-everything), accepted alone.
    everything = {"*", "/*"} & set(settings.rate_limit_exempt_paths)
    exempted = (
        []
        if everything
        else [
            route.path
            for route in routes
            if _LOGIN_SEGMENT.search(route.path)
            and (exempt.matches(route.path) or EXEMPT in marks_of(route.endpoint))
        ]
    )
    problems = []
    if outside:
        problems.append(
            risk_problem(
                "login-route-unlimited",
                f"{_listed(outside)} look like login or token routes but are outside "
                "HARDENKIT_AUTH_PATHS: passwords there are guessed at the default rate "
                "instead of HARDENKIT_RATE_LIMIT_AUTH",
                "add them to HARDENKIT_AUTH_PATHS",
                setting="HARDENKIT_AUTH_PATHS",
            )
        )
    if exempted:
        problems.append(
            risk_problem(
                "login-route-unlimited",
                f"{_listed(exempted)} look like login or token routes and are exempt from "
                "rate limiting: passwords there are guessed at any rate",
                "remove them from HARDENKIT_RATE_LIMIT_EXEMPT_PATHS (or their @exempt())",
                setting="HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
            )
        )
    return problems


def _needs_principal(route: RouteInfo, bound: set[str]) -> bool:
    if any(name in bound or is_tenant_name(name) for name in route.params):
        return True
    if isinstance(getattr(route.endpoint, "hardenkit_guard", None), EndpointGuard):
        return True
    original = getattr(route.route, "original_route", route.route)
    dependant = getattr(original, "dependant", None)
    return dependant is not None and _dependant_needs_principal(dependant, 0)


def _dependant_needs_principal(dependant: Any, depth: int) -> bool:
    from fastapi.security.base import SecurityBase  # noqa: PLC0415 - only with FastAPI

    if depth > 8:
        return False
    for dependency in getattr(dependant, "dependencies", ()):
        call = getattr(dependency, "call", None)
        if isinstance(call, EndpointGuard | SecurityBase) or _returns_principal(call):
            return True
        if _dependant_needs_principal(dependency, depth + 1):
            return True
    return False


def _returns_principal(call: Any) -> bool:
    if call is None:
        return False
    try:
        annotation = inspect.signature(call).return_annotation
    except (TypeError, ValueError):
        return False
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return name.split(".")[-1].removesuffix(" | None") == "Principal"
