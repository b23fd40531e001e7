"""Core settings: environment, Redis, request ids, errors, health."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator

from hardenkit._forwarding import ForwardedHeader
from hardenkit._risks import risk_problem
from hardenkit._section import CommaList, Section, SettingProblem

Environment = Literal["development", "test", "staging", "production"]
RequestIdTrust = Literal["any", "proxies", "none"]


class CoreSettings(Section):
    """Settings every piece shares."""

    env: Environment = Field(
        default="development",
        description=(
            "Deployment environment; `production` turns unsafe settings into startup errors."
        ),
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (`redis://`, `rediss://`, `unix://`). Unset: in-memory stores only.",
    )
    redis_cluster: bool = Field(
        default=False, description="Connect to a Redis Cluster rather than a single server."
    )
    redis_tls_ca_file: str | None = Field(
        default=None,
        description=(
            "CA bundle (PEM) that verifies the Redis server's certificate on `rediss://`; "
            "the system's trust store when unset."
        ),
    )
    redis_tls_cert_file: str | None = Field(
        default=None,
        description="Client certificate (PEM) for Redis servers that require one (`rediss://`).",
    )
    redis_tls_key_file: str | None = Field(
        default=None, description="Private key (PEM) of `HARDENKIT_REDIS_TLS_CERT_FILE`."
    )
    redis_sentinels: CommaList = Field(
        default_factory=list,
        description=(
            "Redis Sentinel addresses (`host:port,...`): the client asks them for the "
            "current master of `HARDENKIT_REDIS_SENTINEL_MASTER` and follows failovers. "
            "`HARDENKIT_REDIS_URL` still gives the password and database; its host is not used."
        ),
    )
    redis_sentinel_master: str | None = Field(
        default=None, description="Name of the master the sentinels monitor (`mymaster`)."
    )
    redis_socket_timeout: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description=(
            "Seconds a Redis command may take before it counts as timed out (time this "
            "process's own event loop ran late is not counted)."
        ),
    )
    redis_failure_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description=(
            "Redis timeouts in a row that switch a process to the memory fallback; a "
            "refused or closed connection switches at once, a single timeout is answered "
            "by the fallback for that call alone."
        ),
    )
    redis_retry_interval: float = Field(
        default=2.0,
        gt=0,
        le=300,
        description="Seconds to wait after a Redis failure before probing it again.",
    )
    request_id_header: str = Field(
        default="X-Request-ID", min_length=1, description="Header carrying the request id."
    )
    request_id_trust: RequestIdTrust = Field(
        default="proxies",
        description=(
            "Whose incoming request id is kept: `proxies` (only from a peer in "
            "HARDENKIT_TRUSTED_PROXIES), `any` (every client), `none` (always a fresh id)."
        ),
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description=(
            "CIDRs of reverse proxies whose forwarding header (HARDENKIT_FORWARDED_HEADER) "
            "is believed; `unix` for a proxy connected over a unix socket (uvicorn --uds)."
        ),
    )
    forwarded_header: ForwardedHeader = Field(
        default="x-forwarded-for",
        description=(
            "The one header the trusted proxies write: `x-forwarded-for` (scheme from "
            "X-Forwarded-Proto) or `forwarded` (RFC 7239, scheme from `proto=`); the other "
            "is ignored."
        ),
    )
    problem_type_base: str = Field(
        default="urn:hardenkit:problem:",
        description="Prefix of the `type` URI in problem+json bodies.",
    )
    health_path: str = Field(
        default="/healthz",
        description="Liveness route (an exact path; always public, never rate limited).",
    )
    ready_path: str = Field(
        default="/readyz",
        description="Readiness route (an exact path; always public, never rate limited).",
    )
    readiness_check_timeout: float = Field(
        default=1.0, gt=0, le=30, description="Seconds each readiness check may take."
    )
    gc_freeze: bool = Field(
        default=False,
        description=(
            "After the lifespan startup, `gc.collect()` then `gc.freeze()`: what startup "
            "built is never scanned by the garbage collector again (see operations.md)."
        ),
    )

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        # `HARDENKIT_REDIS_URL=` (as `make demo` passes it) means "no Redis", not an error.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("health_path", "ready_path")
    @classmethod
    def _probe_path(cls, value: str) -> str:
        # The probes are added to the public paths: a pattern here ("/*") would make
        # every route public.
        if not value.startswith("/") or "*" in value:
            raise ValueError(f"{value!r}: an exact path starting with `/`, without `*`")
        return value

    @field_validator("forwarded_header", "request_id_trust", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{entry!r} is not host:port")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry.strip().lower() == "unix":
                continue  # the proxy on the other end of a unix socket (uvicorn --uds)
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP network (CIDR), nor `unix` (a proxy connected "
                    "over a unix socket)"
                ) from None
        return value

    def collect_problems(self) -> list[SettingProblem]:
        """Report core rule violations."""
        problems = super().collect_problems()
        problems += self._redis_connection_problems()
        if self.env == "production" and self.redis_url is None:
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_URL",
                    "unset: rate limits and replay protection are per process, "
                    "not shared across instances",
                    severity="warning",
                )
            )
        problems.extend(self._proxy_problems())
        return problems

    def _proxy_problems(self) -> list[SettingProblem]:
        # A trusted-proxy range that trusts everyone is the policy's `trusted-proxies-too-wide`
        # risk (_settings/risks.py), refused in production unless accepted by name.
        problems = []
        if self.request_id_trust == "any":
            problems.append(
                SettingProblem(
                    "HARDENKIT_REQUEST_ID_TRUST",
                    "`any`: every client chooses the request id its requests are logged and "
                    "answered under (a victim's, from an error page); keep `any` only for a "
                    "service reached solely through a mesh, else use `proxies`",
                    severity="warning",
                )
            )
        return problems

    def _redis_connection_problems(self) -> list[SettingProblem]:
        problems = []
        if self.redis_sentinels and not self.redis_sentinel_master:
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_SENTINEL_MASTER",
                    "required with HARDENKIT_REDIS_SENTINELS: the name the sentinels monitor "
                    "(`sentinel monitor <name> ...` in sentinel.conf, often mymaster)",
                    production_only=False,
                )
            )
        elif self.redis_sentinel_master and not self.redis_sentinels:
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_SENTINELS",
                    "required with HARDENKIT_REDIS_SENTINEL_MASTER: the sentinels' host:port "
                    "list (redis-sentinel listens on 26379 by default)",
                    production_only=False,
                )
            )
        if self.redis_sentinels and self.redis_cluster:
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_SENTINELS",
                    "set with HARDENKIT_REDIS_CLUSTER=true: a Cluster is reached through its "
                    "nodes, the sentinels would be ignored; set one of the two",
                    production_only=False,
                )
            )
        if self.redis_sentinels and self.redis_url is None:
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_URL",
                    "required with HARDENKIT_REDIS_SENTINELS (password and database; use "
                    "redis://sentinel/0 when there is none)",
                    production_only=False,
                )
            )
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_TLS_KEY_FILE",
                    "HARDENKIT_REDIS_TLS_CERT_FILE and HARDENKIT_REDIS_TLS_KEY_FILE go together",
                    production_only=False,
                )
            )
        for setting, path in (
            ("HARDENKIT_REDIS_TLS_CA_FILE", self.redis_tls_ca_file),
            ("HARDENKIT_REDIS_TLS_CERT_FILE", self.redis_tls_cert_file),
            ("HARDENKIT_REDIS_TLS_KEY_FILE", self.redis_tls_key_file),
        ):
            if path is not None and not Path(path).is_file():
                problems.append(
                    SettingProblem(
                        setting, f"{path!r} is not a readable file", production_only=False
                    )
                )
        tls_files = self.redis_tls_ca_file or self.redis_tls_cert_file
        url = self.redis_url.get_secret_value() if self.redis_url is not None else ""
        if url and (unreadable := _unreadable_redis_url(url)) is not None:
            problems.append(
                SettingProblem("HARDENKIT_REDIS_URL", unreadable, production_only=False)
            )
            return problems  # nothing more can be read from it
        # Behind Sentinel too: the scheme says whether the master is reached over TLS, and
        # TLS files on a plain connection fail every call instead of encrypting it.
        problems += _unverified_tls_problems(url)
        if tls_files and not _is_tls(url):
            problems.append(
                SettingProblem(
                    "HARDENKIT_REDIS_URL",
                    "TLS files are set but the URL is not rediss://: the connection "
                    "would not be encrypted",
                    production_only=False,
                )
            )
        return problems


# redis-py's own spelling of "false" in a URL (redis.connection.FALSE_STRINGS).
_FALSE = frozenset({"0", "F", "FALSE", "N", "NO"})


def _is_tls(url: str) -> bool:
    """Whether redis-py connects over TLS: its scheme is ``rediss``, in any case.

    (``urlsplit`` lowercases the scheme, as redis-py's own parsing does: ``REDISS://`` is
    TLS, and judged as TLS.)
    """
    return urlsplit(url).scheme == "rediss"


def _unverified_tls_problems(url: str) -> list[SettingProblem]:
    """``ssl_cert_reqs=none`` or ``ssl_check_hostname=false`` in the URL: TLS unverified.

    redis-py reads these from the URL's query and turns the certificate check off without
    a word; the message names the options, never the URL (it may hold a password).
    """
    if not _is_tls(url):
        return []
    query = parse_qs(urlsplit(url).query)
    weakened = [
        f"ssl_cert_reqs={value}"
        for value in query.get("ssl_cert_reqs", [])
        if value.lower() in {"none", "optional"}
    ] + [
        f"ssl_check_hostname={value}"
        for value in query.get("ssl_check_hostname", [])
        if value.upper() in _FALSE
    ]
    if not weakened:
        return []
    return [
        risk_problem(
            "redis-tls-unverified",
            f"{', '.join(weakened)} turns off the check of Redis's certificate: anyone on "
            "the network path can pose as Redis and read or change every limit and id",
            "remove it and set HARDENKIT_REDIS_TLS_CA_FILE to the CA that signed Redis's "
            "certificate",
        )
    ]


def _unreadable_redis_url(url: str) -> str | None:
    """Why redis-py cannot read ``url``, without any part of it; ``None`` when it can.

    redis-py's own message may quote the URL (``Port could not be cast to integer value as
    'Xy7kLm9pQ2'``: the start of a password with an unescaped ``/``), so it is never shown.
    """
    from redis.connection import parse_url  # noqa: PLC0415 - only with a Redis URL

    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    except (ValueError, TypeError):
        return (
            "is not a URL redis-py can read: the scheme must be redis://, rediss:// or "
            "unix://, and `/`, `#`, `?` or `@` in a password must be percent-encoded "
            "(`%2F`, `%23`, `%3F`, `%40`)"
        )
    return None
