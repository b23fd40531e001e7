"""What makes a Content-Security-Policy let injected script run: one judgement for all.

``hardenkit check-headers`` grades the CSP a live service sends with it, and the
production policy refuses ``HARDENKIT_CSP_HTML``/``HARDENKIT_CSP_API`` values with it, so
the two can never disagree about what is weak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ScriptWeakness", "csp_directives", "script_weaknesses"]

_NONCE = re.compile(r"'nonce-[^']*'")
_REPORT_DIRECTIVES = frozenset({"report-uri", "report-to"})
_ANYWHERE = frozenset({"*", "https:", "http:", "data:"})


@dataclass(frozen=True, slots=True)
class ScriptWeakness:
    """One way a policy lets script run that it should not; ``risk`` is its id."""

    risk: str
    message: str
    fix: str


def csp_directives(value: str) -> dict[str, frozenset[str]]:
    """Return directive -> sources of a CSP header value (nonces normalised, reports dropped)."""
    directives: dict[str, frozenset[str]] = {}
    for part in _NONCE.sub("'nonce-{nonce}'", value).split(";"):
        words = part.split()
        if words and words[0].lower() not in _REPORT_DIRECTIVES:
            directives.setdefault(words[0].lower(), frozenset(words[1:]))
    return directives


def script_weaknesses(value: str) -> list[ScriptWeakness]:
    """Return every reason the policy ``value`` lets injected or foreign script run."""
    directives = csp_directives(value)
    scripts = directives.get("script-src", directives.get("default-src"))
    if scripts is None:
        return [
            ScriptWeakness(
                "csp-script-anywhere",
                "no script-src or default-src: any script may run",
                "add `default-src 'self'` and a nonce-based script-src",
            )
        ]
    weaknesses = []
    if "'unsafe-eval'" in scripts:
        weaknesses.append(
            ScriptWeakness(
                "csp-unsafe-eval",
                "script-src allows 'unsafe-eval': strings become code",
                "remove 'unsafe-eval'",
            )
        )
    # With a nonce or hash, CSP level 2+ browsers ignore 'unsafe-inline'.
    locked = any(source.startswith(("'nonce-", "'sha")) for source in scripts)
    if "'unsafe-inline'" in scripts and not locked:
        weaknesses.append(
            ScriptWeakness(
                "csp-unsafe-inline",
                "script-src allows 'unsafe-inline' without a nonce or hash: injected script runs",
                "use `'nonce-{nonce}'` (hardenkit fills it per request) instead",
            )
        )
    anywhere = sorted(_ANYWHERE & scripts)
    if anywhere:
        weaknesses.append(
            ScriptWeakness(
                "csp-script-anywhere",
                f"script-src allows {' '.join(anywhere)} (scripts from anywhere run)",
                "name the script hosts, or rely on the nonce",
            )
        )
    return weaknesses
