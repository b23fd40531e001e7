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
# Scheme sources that admit any host (CSP schemes are case-insensitive): blob: and
# filesystem: run whatever any script in the page wrote into them, like data:.
_ANYWHERE_SCHEMES = frozenset({"http:", "https:", "data:", "blob:", "filesystem:"})
# A host-source whose host is `*` (any host, any scheme/port/path): `*`, `https://*`,
# `*:*`, `https://*:443/x`.
_ANY_HOST = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?\*(?::(?:\d+|\*))?(?:/.*)?")
# CSP3: script-src-elem governs <script> elements, script-src-attr event handlers; each
# falls back to script-src, then default-src. Browsers without CSP3 use script-src.
_SCRIPT_DIRECTIVES = ("script-src-elem", "script-src-attr")


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
    """Return every reason the policy ``value`` lets injected or foreign script run.

    Each directive that decides whether some script runs is judged on its own: the
    ``script-src`` fallback (``default-src`` when absent) that older browsers use, and
    ``script-src-elem``/``script-src-attr`` when present (CSP3 browsers use them instead).
    Keywords and schemes are compared case-insensitively, as browsers do.
    """
    directives = csp_directives(value)
    fallback = "script-src" if "script-src" in directives else "default-src"
    if fallback not in directives:
        return [
            ScriptWeakness(
                "csp-script-anywhere",
                "no script-src or default-src: any script may run",
                "add `default-src 'self'` and a nonce-based script-src",
            )
        ]
    judged = [fallback, *(name for name in _SCRIPT_DIRECTIVES if name in directives)]
    weaknesses: list[ScriptWeakness] = []
    for name in judged:
        for weakness in _directive_weaknesses(name, directives[name]):
            if weakness not in weaknesses:
                weaknesses.append(weakness)
    return weaknesses


def _directive_weaknesses(name: str, sources: frozenset[str]) -> list[ScriptWeakness]:
    """Return the weaknesses of one script directive ``name`` with ``sources``."""
    lowered = {source.lower() for source in sources}
    weaknesses = []
    if "'unsafe-eval'" in lowered:
        weaknesses.append(
            ScriptWeakness(
                "csp-unsafe-eval",
                f"{name} allows 'unsafe-eval': strings become code",
                f"remove 'unsafe-eval' from {name}",
            )
        )
    # With a nonce or hash, CSP level 2+ browsers ignore 'unsafe-inline'.
    locked = any(source.startswith(("'nonce-", "'sha")) for source in lowered)
    if "'unsafe-inline'" in lowered and not locked:
        weaknesses.append(
            ScriptWeakness(
                "csp-unsafe-inline",
                f"{name} allows 'unsafe-inline' without a nonce or hash: injected script runs",
                f"use `'nonce-{{nonce}}'` in {name} (hardenkit fills it per request) instead",
            )
        )
    anywhere = sorted(
        source
        for source in lowered
        if source in _ANYWHERE_SCHEMES or _ANY_HOST.fullmatch(source) is not None
    )
    if anywhere:
        weaknesses.append(
            ScriptWeakness(
                "csp-script-anywhere",
                f"{name} allows {' '.join(anywhere)} (scripts from anywhere run)",
                f"name the script hosts in {name}, or rely on the nonce",
            )
        )
    return weaknesses
