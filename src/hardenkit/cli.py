"""The ``hardenkit`` command: ``doctor`` checks a deployment, ``check-headers`` a live service.

``hardenkit doctor`` reads the settings from the environment exactly as the service
would (or, with ``--settings module:callable``, from the function the service builds
them with), lists every violated rule and every value left at its default, checks that
Redis answers (how fast, and how many live instances share it: the count readiness
reports, which also decides whether replay protection should be ``closed``) and that
the JWKS serves usable keys, and exits 1 when
anything fails; it shows where the client address and the request id come from, and with
``--url`` it asks the running service whether its server rewrote the client address
before hardenkit could (uvicorn's proxy headers). ``hardenkit check-headers URL`` fetches
a URL and grades each security header it returns against hardenkit's defaults.
``--json`` prints the same findings for CI. Secrets are never printed: a Redis URL is
shown without its password, a JWKS URL without its query.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import structlog.testing
from pydantic import ValidationError
from pydantic_settings import SettingsError as SourceError

from hardenkit._refusals import collecting
from hardenkit._section import env_name
from hardenkit.auth import JWTVerifier
from hardenkit.errors import ConfigurationError
from hardenkit.headers import LEAKING_HEADERS, HeaderPolicy
from hardenkit.headers._grading import csp_directives, script_weaknesses
from hardenkit.instances import count_live_instances, instances_key
from hardenkit.ratelimit.redis_store import refuses_two_slots
from hardenkit.settings import (
    HardenSettings,
    SettingsError,
    _problems_from_source,
    _problems_from_validation,
    name_problems,
    unparsable_field,
)
from hardenkit.stores import create_redis, failure_fix, is_cluster

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["Finding", "check_headers", "doctor", "main"]

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor's report."""

    check: str
    status: Status
    detail: str


# object, not HardenSettings: a user's callable may return anything, and is checked.
SettingsFactory = Callable[[], object]


def _import_attribute(option: str, spec: str) -> object:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{option} {spec!r}: expected module:attribute")
    # A console script's sys.path starts at its own directory: import the project's
    # modules the way `uvicorn module:app` does, from where the command runs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{option} {spec!r}: cannot import ({type(exc).__name__})") from None


def load_settings_factory(spec: str) -> SettingsFactory:
    """Return the callable ``module:callable`` names (the current directory is importable).

    Raises:
        ValueError: ``spec`` is not ``module:callable`` or does not name a callable.
    """
    target = _import_attribute("--settings", spec)
    if not callable(target):
        raise ValueError(f"--settings {spec!r}: is not callable")
    return target


def load_app(spec: str) -> object:
    """Return the ASGI app ``module:attribute`` names (imported as ``uvicorn`` would).

    Raises:
        ValueError: ``spec`` is malformed or names nothing importable.
        SettingsError: Importing the app ran ``install()``, which refused the settings.
    """
    return _import_attribute("--app", spec)


def _build_settings(
    factory: SettingsFactory, findings: list[Finding]
) -> tuple[HardenSettings | None, HardenSettings | None]:
    """Return ``(settings to judge, settings to connect with)``; either may be missing."""
    reported = {finding.check for finding in findings}
    try:
        settings = factory()
    except ValidationError as exc:
        problems = _problems_from_validation(exc)
    except SourceError as exc:
        problems = _problems_from_source(exc)
    except SettingsError as exc:
        if exc.settings is not None:
            # Parsed, then refused: judge them here so every problem is listed, warnings
            # included, not only the ones that stopped the factory.
            return exc.settings, exc.settings
        problems = exc.problems
    else:
        if isinstance(settings, HardenSettings):
            return settings, settings
        findings.append(
            Finding("settings", "fail", f"the settings callable returned {type(settings).__name__}")
        )
        return None, _connection_settings()
    findings.extend(
        Finding(problem.setting, "fail", problem.message)
        for problem in problems
        if problem.setting not in reported
    )
    return None, _connection_settings()


def _connection_settings() -> HardenSettings | None:
    """Settings from the environment with every unparsable value at its default.

    The settings failed, yet Redis and the JWKS they name can still be checked: an
    operator fixing one problem learns about the next ones in the same run.
    """
    defaults: dict[str, Any] = {}
    for _ in range(len(HardenSettings.model_fields)):
        try:
            return HardenSettings(**defaults)
        except SourceError as exc:
            field = unparsable_field(exc)
            if field is None or field in defaults:
                return None
            defaults[field] = HardenSettings.model_fields[field].get_default(
                call_default_factory=True
            )
            continue
        except ValidationError as exc:
            fields = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            fields &= set(HardenSettings.model_fields) - set(defaults)
            if not fields:
                return None
            for name in fields:
                defaults[name] = HardenSettings.model_fields[name].get_default(
                    call_default_factory=True
                )
    return None  # pragma: no cover - every field reset at most once


def _policy_findings(settings: HardenSettings, app: object | None) -> list[Finding]:
    report = settings.policy(app)  # type: ignore[arg-type]
    findings = [Finding(problem.setting, "fail", problem.detail) for problem in report.errors]
    findings += [Finding(problem.setting, "warn", problem.detail) for problem in report.warnings]
    return findings


def _settings_findings(
    factory: SettingsFactory = HardenSettings, app: object | None = None
) -> tuple[HardenSettings | None, list[Finding]]:
    findings = [
        Finding(problem.setting, "fail", f"{problem.message}; it is refused at startup")
        for problem in name_problems()  # the environment's and the .env file's
    ]
    settings, connect_with = _build_settings(factory, findings)
    if settings is None:
        return connect_with, findings
    findings += _policy_findings(settings, app)
    if not findings:
        findings.append(Finding("settings", "pass", f"valid for env={settings.env}"))
    defaults = sorted(
        env_name(name)
        for name in HardenSettings.model_fields
        if name not in settings.model_fields_set
    )
    findings.append(
        Finding(
            "defaults",
            "pass",
            f"{len(defaults)} settings at their defaults: {', '.join(defaults)}"
            if defaults
            else "every setting is set explicitly",
        )
    )
    return settings, findings


def _safe_url(url: str) -> str:
    """``url`` with every password masked: the user-info's and a ``?password=`` query's.

    redis-py reads ``password`` (and ``sentinel_password``...) from the query too, and
    doctor's output ends up in CI logs.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user_info, host = netloc.rsplit("@", 1)
        user = user_info.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        query = "&".join(
            f"{item.partition('=')[0]}=***"
            if _SECRET_PARAMETER.search(unquote_plus(item.partition("=")[0]))
            else item
            for item in query.split("&")
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_SECRET_PARAMETER = re.compile(r"pass|secret|token|key", re.IGNORECASE)


async def _redis_findings(settings: HardenSettings) -> tuple[list[Finding], int | None]:
    """Redis's latency and how many instances share it (``None``: the count is unknown)."""
    if settings.redis_url is None:
        status: Status = "warn" if settings.is_production else "pass"
        return [Finding("redis", status, "HARDENKIT_REDIS_URL unset: in-memory stores only")], None
    unusable = [
        problem.setting
        for problem in settings.problems()
        if problem.setting.startswith("HARDENKIT_REDIS_") and not problem.production_only
    ]
    # A URL redis-py cannot read may not split where the password ends: never shown.
    shown = "the URL" if "HARDENKIT_REDIS_URL" in unusable else None
    shown = shown or _safe_url(settings.redis_url.get_secret_value())
    if unusable:  # reported with the settings; connecting would only fail less clearly
        not_checked = f"{shown} not checked: fix {', '.join(sorted(set(unusable)))} first"
        return [Finding("redis", "fail", not_checked), _instances_unknown("Redis unchecked")], None
    # The doctor is patient where a request is not: one second per call.
    client = create_redis(settings.model_copy(update={"redis_socket_timeout": 1.0}))
    assert client is not None  # noqa: S101 - redis_url is set
    latencies: list[float] = []
    key = instances_key(settings.rate_limit_key_prefix)
    try:
        for _ in range(5):
            started = time.perf_counter()
            await asyncio.wait_for(client.ping(), timeout=1.0)
            latencies.append((time.perf_counter() - started) * 1000)
        live = await asyncio.wait_for(count_live_instances(client, key), timeout=1.0)
        persistence = await _persistence_finding(settings, client)
        master = getattr(getattr(client, "connection_pool", None), "master_address", None)
        if master is not None:  # behind Sentinel: the URL's host is not what answered
            shown += f" (master {master[0]}:{master[1]}, named by the sentinels)"
    except Exception as exc:  # noqa: BLE001 - every failure is a finding, not a crash
        if len(latencies) < 5:
            failed = Finding("redis", "fail", f"{shown} did not answer PING ({_why(exc)})")
            return [failed, _instances_unknown("Redis did not answer")], None
        return [
            _latency_finding(settings, shown, latencies),
            _instances_unknown(f"counting the heartbeats in {key} failed ({_why(exc)})"),
        ], None
    finally:
        await client.aclose()
    counted = Finding(
        "instances",
        "pass",
        f"{live} live instance{'s' * (live != 1)} share{'s' * (live == 1)} this Redis "
        f"(heartbeats in {key}, the count readiness reports)",
    )
    findings = [_latency_finding(settings, shown, latencies), counted]
    return [*findings, persistence], live


def _why(error: BaseException) -> str:
    """The class of a connection failure, and what to fix when a setting explains it."""
    fix = failure_fix(error)
    return type(error).__name__ if fix is None else f"{type(error).__name__}: {fix}"


async def _persistence_finding(settings: HardenSettings, client: Redis | RedisCluster) -> Finding:
    """Whether Redis keeps its data across a restart: rate limits (and replay) rely on it."""
    check = "redis_persistence"
    if not await _has_epoch(client, settings.rate_limit_key_prefix):
        relying = "rate limits (a key's limit handed out again before the instance that "
        relying += "last decided it restores it: no epoch on this Redis, docs/ratelimit.md)"
    else:
        relying = "rate limits (decisions held from the instances' shares for a few "
        relying += "seconds while they restore what they mirrored, docs/ratelimit.md)"
    if settings.replay_redis_down == "closed":
        relying += " and replay `closed` (every processed id forgotten)"
    try:
        appendonly = await asyncio.wait_for(client.config_get("appendonly"), timeout=1.0)
        save = await asyncio.wait_for(client.config_get("save"), timeout=1.0)
    except Exception as exc:  # noqa: BLE001 - managed Redis often refuses CONFIG
        return Finding(
            check,
            "warn",
            f"unknown: Redis refused CONFIG GET ({type(exc).__name__}); a restart without "
            f"persistence (AOF or RDB) weakens {relying}: check your provider's setting",
        )
    aof = str(_config_value(appendonly, "appendonly")).lower() == "yes"
    rdb = bool(str(_config_value(save, "save")).strip())
    if aof or rdb:
        kind = "AOF" if aof else "RDB snapshots (writes since the last one are lost)"
        return Finding(check, "pass", f"Redis persists with {kind}: its state survives a restart")
    return Finding(
        check,
        "warn",
        f"Redis has no persistence (appendonly no, save ''): a restart empties it, which "
        f"weakens {relying}; enable AOF (appendonly yes)",
    )


async def _has_epoch(client: Redis | RedisCluster, key_prefix: str) -> bool:
    """Whether the rate-limit store can hold decisions after Redis lost its data.

    Not on a Cluster, nor on a Redis that refuses a script two slots (the store leaves
    the epoch out there, by the same check); a check that fails says nothing either way.
    """
    if is_cluster(client):
        return False
    try:
        return not await asyncio.wait_for(refuses_two_slots(client, key_prefix), timeout=1.0)
    except Exception:  # noqa: BLE001 - the other findings report an unreachable Redis
        return True


def _config_value(answer: object, name: str) -> object:
    """One value of a ``CONFIG GET`` answer (Cluster: the first node's)."""
    if isinstance(answer, dict):
        if name in answer or name.encode() in answer:
            return answer.get(name, answer.get(name.encode(), ""))
        first = next(iter(answer.values()), "")
        return _config_value(first, name) if isinstance(first, dict) else first
    return ""


def _latency_finding(settings: HardenSettings, shown: str, latencies: list[float]) -> Finding:
    median = statistics.median(latencies)
    detail = f"{shown} answered PING in {median:.1f} ms (median of 5)"
    if median > settings.redis_socket_timeout * 1000 / 2:
        return Finding(
            "redis",
            "warn",
            f"{detail}: over half of HARDENKIT_REDIS_SOCKET_TIMEOUT "
            f"({settings.redis_socket_timeout * 1000:.0f} ms), expect fallbacks",
        )
    return Finding("redis", "pass", detail)


def _instances_unknown(reason: str) -> Finding:
    return Finding("instances", "warn", f"live instances unknown: {reason}")


_REPLAY_DOWN = env_name("replay_redis_down")


def _replay_advice(findings: list[Finding], live_instances: int | None) -> list[Finding]:
    """The advice to set ``HARDENKIT_REPLAY_REDIS_DOWN=closed``, weighed by the live count.

    The settings policy cannot know how many instances run; the doctor can. With at most
    one live instance a per-process fallback loses nothing, so the advice becomes a pass
    that says when it will apply; with more, or when the count is unknown, it stays a
    warning.
    """
    advised: list[Finding] = []
    for finding in findings:
        if finding.check != _REPLAY_DOWN or finding.status != "warn":
            advised.append(finding)
        elif live_instances is None:
            advised.append(
                Finding(
                    finding.check,
                    "warn",
                    f"{finding.detail} (live instances unknown: assuming more than one)",
                )
            )
        elif live_instances > 1:
            advised.append(
                Finding(finding.check, "warn", f"{live_instances} live instances: {finding.detail}")
            )
        else:
            advised.append(
                Finding(
                    finding.check,
                    "pass",
                    f"`fallback` with {live_instances} live instance"
                    f"{'s' * (live_instances != 1)}: no other instance can process a "
                    "redelivery; set `closed` before a second instance shares this Redis",
                )
            )
    return advised


async def _jwks_finding(settings: HardenSettings) -> Finding | None:
    if settings.jwt_jwks_url is None:
        return None
    parts = urlsplit(settings.jwt_jwks_url)
    _, at, host = parts.netloc.rpartition("@")
    # Whatever user-info the URL carries is a credential (refused, but shown masked).
    shown = urlunsplit((parts.scheme, f"***@{host}" if at else host, parts.path, "", ""))
    try:
        # The service's own client, built the way install() builds it: the same
        # https/loopback rules, timeout, size cap and key filtering apply.
        jwks = JWTVerifier.from_settings(settings).jwks
    except (ValueError, ConfigurationError) as exc:
        return Finding("jwks", "fail", f"{shown}: {exc}")
    assert jwks is not None  # noqa: S101 - jwt_jwks_url is set
    # The client logs why a fetch failed; the doctor shows that reason in its finding
    # instead of letting a log line into its (maybe --json) output.
    with structlog.testing.capture_logs() as events:
        fetched = await jwks.refresh()
    if not fetched:
        reason = next(
            (
                f"{event.get('error')}{': ' + event['detail'] if event.get('detail') else ''}"
                for event in events
                if event.get("event") == "jwks_refresh_failed"
            ),
            "no usable key set",
        )
        return Finding("jwks", "fail", f"{shown}: fetch failed ({reason})")
    count = len(jwks.kids)
    return Finding("jwks", "pass", f"{shown} served {count} usable key{'s' * (count != 1)}")


async def _run_checks(settings: HardenSettings) -> tuple[list[Finding], int | None]:
    findings, live_instances = await _redis_findings(settings)
    jwks = await _jwks_finding(settings)
    if jwks is not None:
        findings.append(jwks)
    return findings, live_instances


_REQUEST_ID_TRUST = {
    "any": "every caller's well-formed id is kept (a client can file its requests under "
    "another's id; for services reached only through a mesh)",
    "proxies": "ids are kept only from HARDENKIT_TRUSTED_PROXIES, replaced from anyone else",
    "none": "every request gets a fresh id; incoming ids are replaced",
}
# A documentation address (RFC 5737): the probe's forwarding header names nobody real.
_PROBE_HOP = "203.0.113.254"


def _request_facts_findings(settings: HardenSettings) -> list[Finding]:
    """Where the client address and the request id come from, as the settings say."""
    if settings.trusted_proxies:
        count = len(settings.trusted_proxies)
        source = (
            f"{settings.forwarded_header} from {count} trusted proxy network"
            f"{'s' * (count != 1)}, the right-most untrusted hop (HARDENKIT_FORWARDED_HEADER)"
        )
    else:
        source = "the connected peer (HARDENKIT_TRUSTED_PROXIES is empty: no header is read)"
    return [
        Finding("client_ip", "pass", source),
        Finding(
            "request_id_trust",
            "pass",
            f"{settings.request_id_trust}: {_REQUEST_ID_TRUST[settings.request_id_trust]}",
        ),
    ]


def _server_finding(url: str, ready_path: str, *, timeout: float = 10.0) -> Finding:
    """Probe the running service: did its server rewrite the client before hardenkit?

    The probe carries an ``X-Forwarded-For`` naming a documentation address; a server that
    applies it (uvicorn trusting this caller) is caught by hardenkit on that very
    request, and one that rewrote clients at startup or earlier is reported as well, in
    readiness' ``proxy_headers`` check.
    """
    try:
        import httpx  # noqa: PLC0415 - optional extra
    except ImportError:
        return Finding("proxy_headers", "fail", "--url needs httpx: pip install 'hardenkit[httpx]'")
    target = url.rstrip("/") + ready_path
    try:
        response = httpx.get(target, headers={"X-Forwarded-For": _PROBE_HOP}, timeout=timeout)
        check = response.json().get("checks", {}).get("proxy_headers")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Finding("proxy_headers", "fail", f"GET {target} failed ({type(exc).__name__})")
    if not isinstance(check, dict):
        return Finding(
            "proxy_headers",
            "warn",
            f"GET {target} → {response.status_code} has no proxy_headers check "
            "(not a hardenkit install() of this version?): cannot tell",
        )
    if check.get("client_resolved_by") != "hardenkit":
        return Finding(
            "proxy_headers",
            "fail",
            f"the server rewrote the client address before hardenkit "
            f"({check.get('detected_by', 'reported by readiness')}): "
            "rate limits and audit logs use an address a client can pick; "
            "run uvicorn with --no-proxy-headers and set HARDENKIT_TRUSTED_PROXIES",
        )
    return Finding(
        "proxy_headers",
        "pass",
        f"{target}: the server left the client address to hardenkit "
        f"(a probe with X-Forwarded-For was not applied)",
    )


def doctor(
    factory: SettingsFactory = HardenSettings,
    app: object | None = None,
    *,
    url: str | None = None,
) -> list[Finding]:
    """Return every finding for the current environment.

    The settings are judged by the same policy startup applies (``load_settings`` and
    ``install()``); Redis and the JWKS are checked even when the settings fail.

    Args:
        factory: What builds the settings; the environment alone by default, or the
            service's own function (``--settings module:callable``).
        app: The service's ASGI app (``--app module:app``): the rules that need its
            routes run too.
        url: Base URL of the running service (``--url``): also check that its server did
            not rewrite the client address before hardenkit.
    """
    settings, findings = _settings_findings(factory, app)
    if settings is not None:
        findings.extend(_request_facts_findings(settings))
        checked, live_instances = asyncio.run(_run_checks(settings))
        findings = _replay_advice(findings, live_instances) + checked
    if url is not None:
        ready_path = settings.ready_path if settings is not None else "/readyz"
        findings.append(_server_finding(url, ready_path))
    return findings


# --- check-headers -------------------------------------------------------------------

# Missing one of these is a fail: without them a browser runs injected script, sniffs a
# JSON body into HTML, or talks plain http to a service reached over https.
_REQUIRED_HEADERS = frozenset(
    {"content-security-policy", "x-content-type-options", "strict-transport-security"}
)


def _csp_weakness(value: str) -> str | None:
    weaknesses = script_weaknesses(value)
    return weaknesses[0].message if weaknesses else None


def _grade_csp(received: str, expected: str) -> tuple[Status, str]:
    weakness = _csp_weakness(received)
    if weakness is not None:
        return "fail", weakness
    if csp_directives(received) == csp_directives(expected):
        return "pass", "as hardenkit's default"
    return "warn", f"differs from hardenkit's default ({expected})"


def expected_headers(policy: HeaderPolicy, kind: str, *, https: bool) -> dict[str, str]:
    """Return the headers ``policy`` sends on a ``kind`` (html/api) response, CSP included."""
    compiled = policy.compiled("html" if kind == "html" else "api", https=https)
    expected = {name.decode(): value.decode() for name, value in compiled.static}
    csp = policy.csp_for("html" if kind == "html" else "api")
    if csp is not None:
        expected[compiled.csp_name.decode()] = csp.render("{nonce}", https=https)
    expected.pop("reporting-endpoints", None)
    return expected


def _grade(name: str, received: str | None, expected: str) -> Finding:
    if received is None:
        status: Status = "fail" if name in _REQUIRED_HEADERS else "warn"
        return Finding(name, status, f"missing (hardenkit sends {expected})")
    if name == "content-security-policy":
        status, detail = _grade_csp(received, expected)
        return Finding(name, status, f"{received} — {detail}")
    if name == "x-content-type-options" and received.lower() != "nosniff":
        return Finding(name, "fail", f"{received} — browsers sniff unless it is nosniff")
    if received == expected:
        return Finding(name, "pass", received)
    return Finding(name, "warn", f"{received} — hardenkit's default is {expected}")


def check_headers(url: str, *, timeout: float = 10.0) -> list[Finding]:
    """Fetch ``url`` and grade each security header against hardenkit's defaults.

    Args:
        url: The page or endpoint to fetch (``GET``, redirects not followed).
        timeout: Seconds the request may take.

    Raises:
        ImportError: ``httpx`` is not installed (``pip install 'hardenkit[httpx]'``).
    """
    import httpx  # noqa: PLC0415 - optional extra

    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        return [Finding("response", "fail", f"GET {url} failed ({type(exc).__name__})")]
    headers = response.headers
    content_type = headers.get("content-type", "")
    kind = (
        "html"
        if content_type.split(";")[0].strip() in {"text/html", "application/xhtml+xml"}
        else "api"
    )
    https = response.url.scheme == "https"
    findings = [
        Finding(
            "response",
            "pass",
            f"GET {response.url} → {response.status_code} {content_type or '(no type)'}; "
            f"graded as {kind} over {'https' if https else 'http'}",
        )
    ]
    expected = expected_headers(HeaderPolicy(), kind, https=https)
    report_only = headers.get("content-security-policy-report-only")
    if report_only is not None and "content-security-policy" not in headers:
        findings.append(
            Finding(
                "content-security-policy-report-only",
                "warn",
                f"{report_only} — report-only: violations are reported, nothing is blocked",
            )
        )
    findings.extend(_grade(name, headers.get(name), value) for name, value in expected.items())
    if not https and "strict-transport-security" in headers:
        findings.append(
            Finding(
                "strict-transport-security",
                "warn",
                "sent over plain http, where browsers ignore it",
            )
        )
    findings.extend(
        Finding(name, "warn", f"{headers[name]} — names the software stack; remove it")
        for name in sorted(LEAKING_HEADERS)
        if name in headers
    )
    return findings


def _render_table(findings: Sequence[Finding]) -> str:
    width = max(len(finding.check) for finding in findings)
    lines = [f"{'CHECK'.ljust(width)}  STATUS  DETAIL"]
    lines.extend(
        f"{finding.check.ljust(width)}  {finding.status.upper().ljust(6)}  {finding.detail}"
        for finding in findings
    )
    counts = {
        status: sum(f.status == status for f in findings) for status in ("pass", "warn", "fail")
    }
    lines.append(f"\n{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed")
    return "\n".join(lines)


def _report(findings: Sequence[Finding], *, as_json: bool, out: TextIO | None = None) -> int:
    if as_json:
        print(json.dumps([asdict(finding) for finding in findings], indent=2), file=out)
    else:
        print(_render_table(findings), file=out)
    return 1 if any(finding.status == "fail" for finding in findings) else 0


def _doctor_command(
    settings_spec: str | None, app_spec: str | None, url: str | None, *, as_json: bool
) -> int:
    # Whatever the checks print (the app's import runs install(), whose warnings a default
    # structlog writes to stdout) goes to stderr: stdout carries the report alone, so
    # `hardenkit doctor --json` stays parseable.
    report_to = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        return _doctor_checks(settings_spec, app_spec, url, as_json=as_json, out=report_to)


def _doctor_checks(
    settings_spec: str | None,
    app_spec: str | None,
    url: str | None,
    *,
    as_json: bool,
    out: TextIO,
) -> int:
    factory: SettingsFactory = HardenSettings
    app: object | None = None
    # install() runs on the app's import: its refusals are collected, not raised, so the
    # import goes on and every rule, the routes' included, is judged in this one run.
    refusals: list[Exception] = []
    try:
        if settings_spec:
            factory = load_settings_factory(settings_spec)
        if app_spec:
            with collecting() as refusals:
                app = load_app(app_spec)
    except ValueError as exc:
        print(f"hardenkit doctor: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # refused with nothing parsed: install() could not go on
        refusals.append(exc)
    kit = getattr(getattr(app, "state", None), "hardenkit", None)
    if not settings_spec and kit is not None:
        factory = lambda: kit.settings  # noqa: E731 - the settings the service runs with
    findings = doctor(factory, app, url=url)
    findings[:0] = _refusal_findings(refusals, findings)
    if app_spec and app is None:
        # A value that does not parse stops install(), and the app's import with it: say
        # that its routes went unchecked, or the report reads as if they passed.
        findings.append(
            Finding(
                "app",
                "fail",
                f"{app_spec} was not imported: a setting above does not parse, so its "
                "routes were not checked; fix it and run again",
            )
        )
    return _report(findings, as_json=as_json, out=out)


def _refusal_findings(refusals: list[Exception], findings: list[Finding]) -> list[Finding]:
    """What was refused while the app was imported, less what the checks found anyway."""
    added: list[Finding] = []
    for refused in refusals:
        problems = refused.problems if isinstance(refused, SettingsError) else []
        for problem in problems:
            if not any(
                found.check == problem.setting and problem.message in found.detail
                for found in [*findings, *added]
            ):
                added.append(
                    Finding(problem.setting, "fail", f"{problem.detail} (importing the app)")
                )
    return added


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hardenkit`` console script."""
    parser = argparse.ArgumentParser(prog="hardenkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor_parser = commands.add_parser(
        "doctor", help="check the configuration in this environment"
    )
    doctor_parser.add_argument("--json", action="store_true", help="print findings as JSON")
    doctor_parser.add_argument(
        "--settings",
        metavar="MODULE:CALLABLE",
        help="build the settings with this function (as the service does) instead of "
        "from the environment alone, e.g. myservice.config:settings",
    )
    doctor_parser.add_argument(
        "--url",
        metavar="URL",
        help="base URL of the running service, e.g. http://127.0.0.1:8000: fail if its "
        "server rewrote the client address before hardenkit (uvicorn's proxy headers)",
    )
    doctor_parser.add_argument(
        "--app",
        metavar="MODULE:APP",
        help="also check the app's routes (tenant parameters, public prefixes, login "
        "routes), e.g. myservice.main:app",
    )
    headers_parser = commands.add_parser(
        "check-headers", help="grade the security headers a live URL returns"
    )
    headers_parser.add_argument("url", help="the URL to fetch, e.g. http://127.0.0.1:8000/")
    headers_parser.add_argument("--json", action="store_true", help="print findings as JSON")
    headers_parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds the request may take"
    )
    args = parser.parse_args(argv)

    if args.command == "doctor":
        return _doctor_command(args.settings, args.app, args.url, as_json=args.json)
    if args.command == "check-headers":
        try:
            findings = check_headers(args.url, timeout=args.timeout)
        except ImportError:
            print(
                "hardenkit check-headers needs httpx: pip install 'hardenkit[httpx]'",
                file=sys.stderr,
            )
            return 2
        return _report(findings, as_json=args.json)
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
