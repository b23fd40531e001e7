"""The ``hardenkit`` command: ``hardenkit doctor`` checks a deployment's configuration.

``hardenkit doctor`` reads the settings from the environment exactly as the service
would, lists every violated rule and every value left at its default, checks that Redis
answers (and how fast), and exits 1 when anything fails. ``--json`` prints the same
findings for CI. Secrets are never printed: a Redis URL is shown without its password.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from hardenkit._settings._base import env_name
from hardenkit.settings import HardenSettings, _problems_from_validation

__all__ = ["Finding", "doctor", "main"]

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor's report."""

    check: str
    status: Status
    detail: str


def _settings_findings() -> tuple[HardenSettings | None, list[Finding]]:
    findings = [
        Finding(name, "fail", "unknown setting (a typo?): it is refused at startup")
        for name in HardenSettings.unknown_variables()
    ]
    try:
        settings = HardenSettings()
    except ValidationError as exc:
        findings.extend(
            Finding(problem.setting, "fail", problem.message)
            for problem in _problems_from_validation(exc)
        )
        return None, findings
    for problem in settings.problems():
        if problem.severity == "warning":
            if settings.is_production or not problem.production_only:
                findings.append(Finding(problem.setting, "warn", problem.message))
        elif settings.is_production or not problem.production_only:
            findings.append(Finding(problem.setting, "fail", problem.message))
        else:
            findings.append(
                Finding(problem.setting, "warn", f"{problem.message} (refused in production)")
            )
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
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


async def _redis_finding(settings: HardenSettings) -> Finding:
    from hardenkit.stores import create_redis  # noqa: PLC0415 - redis only when configured

    if settings.redis_url is None:
        status: Status = "warn" if settings.is_production else "pass"
        return Finding("redis", status, "HARDENKIT_REDIS_URL unset: in-memory stores only")
    shown = _safe_url(settings.redis_url.get_secret_value())
    # The doctor is patient where a request is not: one second per ping.
    client = create_redis(settings.model_copy(update={"redis_socket_timeout": 1.0}))
    assert client is not None  # noqa: S101 - redis_url is set
    latencies: list[float] = []
    try:
        for _ in range(5):
            started = time.perf_counter()
            await asyncio.wait_for(client.ping(), timeout=1.0)
            latencies.append((time.perf_counter() - started) * 1000)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding, not a crash
        return Finding("redis", "fail", f"{shown} did not answer PING ({type(exc).__name__})")
    finally:
        await client.aclose()
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


async def _run_checks(settings: HardenSettings) -> list[Finding]:
    return [await _redis_finding(settings)]


def doctor() -> list[Finding]:
    """Return every finding for the current environment."""
    settings, findings = _settings_findings()
    if settings is not None:
        findings.extend(asyncio.run(_run_checks(settings)))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hardenkit`` console script."""
    parser = argparse.ArgumentParser(prog="hardenkit", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    doctor_parser = commands.add_parser(
        "doctor", help="check the configuration in this environment"
    )
    doctor_parser.add_argument("--json", action="store_true", help="print findings as JSON")
    args = parser.parse_args(argv)

    if args.command == "doctor":
        findings = doctor()
        if args.json:
            print(json.dumps([asdict(finding) for finding in findings], indent=2))
        else:
            print(_render_table(findings))
        return 1 if any(finding.status == "fail" for finding in findings) else 0
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
