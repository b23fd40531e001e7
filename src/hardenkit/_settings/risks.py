"""Accepting a refused risk by its id, and the rules that read several sections.

:data:`hardenkit._risks.RISKS` is the one list of risks. The rules below find the ones
that need more than one section's settings; the section that owns a setting finds the
rest.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, cast

from pydantic import Field, field_validator

from hardenkit._paths import PathPatterns
from hardenkit._risks import RISKS, risk_problem
from hardenkit._section import CommaList, Section, SettingProblem
from hardenkit._settings.requests import REQUEST_TIMEOUT_CAP

if TYPE_CHECKING:
    from hardenkit.settings import HardenSettings

__all__ = ["RiskSettings"]

# A public range wider than this many prefix bits holds clients, not your proxies.
_WIDEST_PUBLIC_PREFIX = {4: 16, 6: 32}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: IPv4 clients, as IPv6


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
        problems += _untimed_webhook_problems(settings)
        problems += _untimed_everything_problems(settings)
        return problems


_EVERYTHING = frozenset({"*", "/*"})


def _untimed_everything_problems(settings: HardenSettings) -> list[SettingProblem]:
    """A catch-all that ends the request timeout (streaming) or lifts it past its cap."""
    problems = []
    if _EVERYTHING & set(settings.streaming_paths):
        problems.append(
            risk_problem(
                "streaming-paths-everything",
                "`*` exempts every route from the request timeout: a stuck handler holds "
                "its connection (and what it locked) for ever",
                "list the streaming routes one by one (SSE and WebSockets are exempt anyway)",
            )
        )
    long = [
        pattern
        for pattern, seconds in settings.request_timeout_routes.items()
        if pattern in _EVERYTHING and seconds > REQUEST_TIMEOUT_CAP
    ]
    if long:
        problems.append(
            risk_problem(
                "request-timeout-catch-all-long",
                f"`{long[0]}` sets every route's timeout past "
                f"{REQUEST_TIMEOUT_CAP:g} s, the cap of HARDENKIT_REQUEST_TIMEOUT",
                "raise the timeout of the routes that need it, one by one",
            )
        )
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
    networks = [
        ipaddress.ip_network(entry, strict=False)
        for entry in settings.trusted_proxies
        if entry.strip().lower() != "unix"  # a socket's peer: one proxy, never a client
    ]
    # Judged together: 256 /16s are one /8, and a client range split in pieces is as wide.
    collapsed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        *ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv4Network)),
        *ipaddress.collapse_addresses(n for n in networks if isinstance(n, ipaddress.IPv6Network)),
    ]
    wide = [str(network) for network in collapsed if _too_wide(network)]
    for version, bits in ((4, 32), (6, 128)):
        # Public pieces that are each narrow enough may not be together (3 x /17).
        public = [
            network
            for network in collapsed
            if network.version == version and not network.is_private and str(network) not in wide
        ]
        if sum(network.num_addresses for network in public) > 2 ** (
            bits - _WIDEST_PUBLIC_PREFIX[version]
        ):
            wide += [str(network) for network in public]
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
                "use `fallback` (each instance its share of the limit) or `closed` (503)",
            )
        )
    share = settings.rate_limit_fallback_share
    if share != "auto" and settings.redis_url is not None:
        problems.append(
            risk_problem(
                "rate-limit-fallback-share-fixed",
                f"`{share}` is a fixed share: while Redis is unavailable every instance "
                f"admits {share} of each limit, so the instances together admit more than "
                "the limit as soon as there are more than 1 / share of them",
                "use `auto` (1 / live instances, counted by heartbeats in Redis)",
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


def _untimed_webhook_problems(settings: HardenSettings) -> list[SettingProblem]:
    """A webhook path the request timeout skips: nothing bounds its handler's run."""
    streaming = PathPatterns(settings.streaming_paths)
    # Two patterns overlap when either matches the shortest path of the other.
    untimed = [
        pattern
        for pattern in settings.verified_webhook_paths
        if streaming.matches(_base(pattern))
        or any(PathPatterns([pattern]).matches(_base(other)) for other in settings.streaming_paths)
    ]
    if not untimed:
        return []
    return [
        risk_problem(
            "webhook-path-untimed",
            f"{', '.join(untimed)} is both a webhook path and a streaming "
            "path: no timeout ends a delivery's handler, so its claim (the request timeout "
            "+ 5 s) may lapse mid-run and the sender's retry is processed beside it",
            "remove the webhook paths from HARDENKIT_STREAMING_PATHS",
        )
    ]


def _base(pattern: str) -> str:
    """The shortest path ``pattern`` matches (``/hooks/*`` -> ``/hooks``, ``*`` -> ``/``).

    An exact pattern is its own path, a trailing ``/`` included (``/hooks/`` is not
    ``/hooks``).
    """
    if not pattern.endswith("*"):
        return pattern
    return pattern.removesuffix("*").removesuffix("/") or "/"
