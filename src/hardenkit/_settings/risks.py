"""Settings that switch a protection off by another name, and accepting one by its id.

Each :class:`Risk` is a configuration production refuses because it weakens a protection
without saying so (``HARDENKIT_PUBLIC_PATHS=/*`` is ``HARDENKIT_AUTH_MODE=off`` by another
name). An operator who really means it accepts that one risk by id in
``HARDENKIT_ACCEPT_RISKS`` (``public-paths-everything,csp-unsafe-eval``): there is no
wildcard and no "accept all", an unknown id is refused in every environment, and every
accepted risk is logged at startup and listed by ``hardenkit doctor`` on every run.

:data:`RISKS` is the one list; the rules below find them from the settings alone, and
:mod:`hardenkit._app_policy` finds the ones that need the application's routes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from pydantic import Field, field_validator

from hardenkit._settings._base import CommaList, Section, SettingProblem
from hardenkit.headers._grading import ScriptWeakness, script_weaknesses

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["RISKS", "Risk", "RiskSettings", "risk_problem"]

ACCEPT_RISKS = "HARDENKIT_ACCEPT_RISKS"
# A public range wider than this many prefix bits holds clients, not your proxies.
_WIDEST_PUBLIC_PREFIX = {4: 16, 6: 32}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: IPv4 clients, as IPv6


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
            "auth-paths-empty",
            "HARDENKIT_AUTH_PATHS",
            "empty while the app has a login or token route: passwords may be guessed at "
            "the default rate",
            needs_app=True,
        ),
        Risk(
            "login-route-unlimited",
            "HARDENKIT_AUTH_PATHS, HARDENKIT_RATE_LIMIT_EXEMPT_PATHS",
            "a login or token route outside the auth paths, or inside the exempt paths: "
            "passwords there are guessed at the default rate, or at any rate",
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


class RiskSettings(Section):
    """Which refused configurations the operator accepts, by name."""

    accept_risks: CommaList = Field(
        default_factory=list,
        description=(
            "Ids of refused production risks accepted on purpose (docs/settings.md lists "
            "them); each is logged at startup and warned by `hardenkit doctor`."
        ),
    )

    @field_validator("accept_risks")
    @classmethod
    def _known_risks(cls, value: list[str]) -> list[str]:
        unknown = [risk_id for risk_id in value if risk_id not in RISKS]
        if unknown:
            raise ValueError(
                f"unknown risk id(s) {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(sorted(RISKS))} (there is no wildcard)"
            )
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report settings that switch a protection off by another name."""
        problems = super().collect_problems()
        settings = cast("HardenSettings", self)
        problems += _public_path_problems(settings)
        problems += _proxy_problems(settings)
        problems += _rate_limit_problems(settings)
        problems += _cors_credential_problems(settings)
        problems += _csp_problems(settings)
        return problems


def _public_path_problems(settings: HardenSettings) -> list[SettingProblem]:
    if settings.auth_mode == "off" or not {"*", "/*"} & set(settings.public_paths):
        return []
    return [
        risk_problem(
            "public-paths-everything",
            "`/*` makes every route public: auth is off by another name",
            "list the public routes one by one (health and readiness are public already)",
        )
    ]


def _proxy_problems(settings: HardenSettings) -> list[SettingProblem]:
    networks = [ipaddress.ip_network(entry, strict=False) for entry in settings.trusted_proxies]
    # Judged together: 256 /16s are one /8, and a client range split in pieces is as wide.
    collapsed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        *ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv4Network)),
        *ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv6Network)),
    ]
    wide = [str(network) for network in collapsed if _too_wide(network)]
    if not wide:
        return []
    return [
        risk_problem(
            "trusted-proxies-too-wide",
            f"{', '.join(wide)} trusts clients as proxies: any client picks the ip its rate "
            "limit and audit events use",
            "list only your load balancers' addresses or private subnets",
        )
    ]


def _too_wide(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if network.prefixlen == 0:
        return True
    if network.version == 6 and network.overlaps(_NAT64):
        # Every IPv4 client reaches an IPv6-only service from an address in 64:ff9b::/96:
        # the part of that range trusted is as wide as the IPv4 range it maps.
        mapped_prefix = max(network.prefixlen, _NAT64.prefixlen) - _NAT64.prefixlen
        if mapped_prefix < _WIDEST_PUBLIC_PREFIX[4]:
            return True
    return not network.is_private and network.prefixlen < _WIDEST_PUBLIC_PREFIX[network.version]


def _rate_limit_problems(settings: HardenSettings) -> list[SettingProblem]:
    problems = []
    if {"*", "/*"} & set(settings.rate_limit_exempt_paths):
        problems.append(
            risk_problem(
                "rate-limit-exempt-everything",
                "`*` exempts every route from rate limiting",
                "list the exempt routes one by one",
            )
        )
    if settings.rate_limit_redis_down == "open":
        problems.append(
            risk_problem(
                "rate-limit-open-when-redis-down",
                "`open` lets every request through while Redis is down: an outage (or an "
                "attacker who causes one) switches the limits off",
                "use `fallback` (per-instance limits) or `closed` (503)",
            )
        )
    return problems


def _cors_credential_problems(settings: HardenSettings) -> list[SettingProblem]:
    plain = [origin for origin in settings.cors_origins if origin.startswith("http://")]
    if not plain or not settings.cors_allow_credentials:
        return []
    return [
        risk_problem(
            "cors-http-credentials",
            f"{', '.join(plain)} with HARDENKIT_CORS_ALLOW_CREDENTIALS=true: a page served "
            "over plain http (anyone on the network can change it) makes credentialed "
            "requests and reads the answers",
            "serve those origins over https",
        )
    ]


def _csp_problems(settings: HardenSettings) -> list[SettingProblem]:
    problems: list[SettingProblem] = []
    for setting, value in (
        ("HARDENKIT_CSP_HTML", settings.csp_html),
        ("HARDENKIT_CSP_API", settings.csp_api),
    ):
        if value is None:
            continue
        weaknesses: list[ScriptWeakness] = script_weaknesses(value)
        problems.extend(
            risk_problem(weakness.risk, weakness.message, weakness.fix, setting=setting)
            for weakness in weaknesses
        )
    return problems


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
