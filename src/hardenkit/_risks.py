"""The risks an operator may accept by id, and the problem that names one.

Each :class:`Risk` is a configuration production refuses because it weakens a protection
without saying so (``HARDENKIT_PUBLIC_PATHS=/*`` is ``HARDENKIT_AUTH_MODE=off`` by another
name). An operator who really means it accepts that one risk by id in
``HARDENKIT_ACCEPT_RISKS`` (``public-paths-everything,csp-unsafe-eval``): there is no
wildcard and no "accept all", an unknown id is refused in every environment, and every
accepted risk is logged at startup and listed by ``hardenkit doctor`` on every run.

:data:`RISKS` is the one list. The sections that own a setting find its risks
(:mod:`hardenkit.headers._settings` the CSP ones), :mod:`hardenkit._settings.risks` the
ones that read several sections, and :mod:`hardenkit._app_policy` the ones that need the
application's routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hardenkit._section import SettingProblem

__all__ = ["ACCEPT_RISKS", "RISKS", "Risk", "risk_problem", "risks_table"]

ACCEPT_RISKS = "HARDENKIT_ACCEPT_RISKS"


@dataclass(frozen=True, slots=True)
class Risk:
    """One refused configuration an operator may accept by ``id``."""

    id: str
    setting: str
    refused: str
    needs_app: bool = False


RISKS: Final[dict[str, Risk]] = {
    risk.id: risk
    for risk in (
        Risk(
            "public-paths-everything",
            "HARDENKIT_PUBLIC_PATHS",
            "`/*`: no route needs credentials, and a client's tenant header reaches the app",
        ),
        Risk(
            "public-paths-protected-prefix",
            "HARDENKIT_PUBLIC_PATHS",
            "a prefix (`/api/*`) over routes that need the principal or bind a tenant",
            needs_app=True,
        ),
        Risk(
            "public-route-protected",
            "HARDENKIT_PUBLIC_PATHS",
            "`@public()` on a route that needs the principal or binds a tenant",
            needs_app=True,
        ),
        Risk(
            "trusted-proxies-too-wide",
            "HARDENKIT_TRUSTED_PROXIES",
            "`0.0.0.0/0`, `::/0`, or public ranges that together are wider than /16 (IPv4; "
            "NAT64 `64:ff9b::/96` counts as the IPv4 it maps) or /32 (IPv6): clients choose "
            "their own ip",
        ),
        Risk(
            "rate-limit-exempt-everything",
            "HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
            "`*` or `/*`: nothing is rate limited",
        ),
        Risk(
            "streaming-paths-everything",
            "HARDENKIT_STREAMING_PATHS",
            "`*` or `/*`: no request has a timeout",
        ),
        Risk(
            "request-timeout-catch-all-long",
            "HARDENKIT_REQUEST_TIMEOUT_ROUTES",
            "a `*` or `/*` route over 3600 s, the cap of HARDENKIT_REQUEST_TIMEOUT: the "
            "timeout of every route, past its cap",
        ),
        Risk(
            "auth-paths-empty",
            "HARDENKIT_AUTH_PATHS",
            "empty while the app has a login or token route: passwords may be guessed at "
            "the default rate",
            needs_app=True,
        ),
        Risk(
            "login-route-unlimited",
            "HARDENKIT_AUTH_PATHS, HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
            "a login, token, one-time-code (`/mfa`, `/otp`) or password-reset route outside "
            "the auth paths, or inside the exempt paths: passwords and codes there are "
            "guessed at the default rate, or at any rate",
            needs_app=True,
        ),
        Risk(
            "auth-report-only",
            "HARDENKIT_AUTH_MODE",
            "`report_only`: every bad credential is let through (logged); for a rollout",
        ),
        Risk(
            "rate-limit-open-when-redis-down",
            "HARDENKIT_RATE_LIMIT_REDIS_DOWN",
            "`open`: a Redis outage switches every limit off",
        ),
        Risk(
            "rate-limit-fallback-share-fixed",
            "HARDENKIT_RATE_LIMIT_FALLBACK_SHARE",
            "a number instead of `auto` with Redis: during an outage the instances together "
            "admit instances × share × the limit (`1`: each instance the whole limit)",
        ),
        Risk(
            "webhook-path-untimed",
            "HARDENKIT_STREAMING_PATHS",
            "a webhook path among the streaming paths: no timeout ends its handler, so its "
            "claim may lapse mid-run and the sender's retry is processed beside it",
        ),
        Risk(
            "webhook-path-unserved",
            "HARDENKIT_WEBHOOK_PATHS",
            "a webhook path no route serves (written without a router prefix, or with the "
            "root path): the signature check guards nothing, and the real webhook route "
            "is served unsigned",
            needs_app=True,
        ),
        Risk(
            "webhook-handler-sync",
            "HARDENKIT_WEBHOOK_PATHS",
            "a webhook route served by a synchronous (`def`) handler: its thread outlives "
            "the request timeout, so its claim may lapse mid-run and the sender's retry is "
            "processed beside it",
            needs_app=True,
        ),
        Risk(
            "redis-tls-unverified",
            "HARDENKIT_REDIS_URL",
            "`rediss://` with `ssl_cert_reqs=none` (or `optional`) or "
            "`ssl_check_hostname=false` in the URL: anyone on the path can pose as Redis",
        ),
        Risk(
            "cors-http-credentials",
            "HARDENKIT_CORS_ORIGINS",
            "an `http://` origin while HARDENKIT_CORS_ALLOW_CREDENTIALS=true: anyone on the "
            "path reads credentialed responses",
        ),
        Risk(
            "csp-script-anywhere",
            "HARDENKIT_CSP_HTML, HARDENKIT_CSP_API",
            "`script-src`, `script-src-elem` or `script-src-attr` (or `default-src` in their "
            "place) with `*`, a host `*` (`https://*`), `http:`, `https:`, `data:` or `blob:`",
        ),
        Risk(
            "csp-unsafe-inline",
            "HARDENKIT_CSP_HTML, HARDENKIT_CSP_API",
            "`'unsafe-inline'` scripts without a nonce or hash: injected script runs",
        ),
        Risk(
            "csp-unsafe-eval",
            "HARDENKIT_CSP_HTML, HARDENKIT_CSP_API",
            "`'unsafe-eval'` scripts",
        ),
    )
}


def risk_problem(
    risk_id: str, message: str, fix: str, *, setting: str | None = None
) -> SettingProblem:
    """Return the production error for ``risk_id``; the fix names the way to accept it."""
    risk = RISKS[risk_id]
    return SettingProblem(
        setting or risk.setting,
        message,
        risk=risk_id,
        fix=f"{fix}, or accept the risk with {ACCEPT_RISKS}={risk_id}",
    )


def risks_table() -> str:
    """Return the markdown table of :data:`RISKS` docs/settings.md carries (tested equal)."""
    lines = [
        "| risk id (`HARDENKIT_ACCEPT_RISKS`) | variable | refused in production when |",
        "|---|---|---|",
    ]
    for risk in RISKS.values():
        setting = ", ".join(f"`{name.strip()}`" for name in risk.setting.split(","))
        when = risk.refused + (" (checked against the app's routes)" if risk.needs_app else "")
        lines.append(f"| `{risk.id}` | {setting} | {when} |")
    return "\n".join(lines)
