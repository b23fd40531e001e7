"""CSP: an immutable, validated Content-Security-Policy with a per-request nonce slot.

A policy is checked once, when it is built, for the mistakes that silently weaken it in
a browser: keywords without quotes (``self`` is a host named "self"), a missing
``default-src`` (everything not named is then allowed), ``'none'`` next to other sources
(browsers ignore the ``'none'``), a fixed nonce (a nonce that never changes is no nonce),
separators smuggled into a source. Rendering is a join of precomputed byte strings
around the nonce, so a request pays nanoseconds, not parsing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["CSP", "CSPError"]

NONCE_SOURCE: Final = "'nonce-{nonce}'"

# Directives whose value is a source list.
_SOURCE_LIST_DIRECTIVES: Final = frozenset(
    {
        "default-src",
        "child-src",
        "connect-src",
        "fenced-frame-src",
        "font-src",
        "frame-src",
        "img-src",
        "manifest-src",
        "media-src",
        "object-src",
        "script-src",
        "script-src-elem",
        "script-src-attr",
        "style-src",
        "style-src-elem",
        "style-src-attr",
        "worker-src",
        "base-uri",
        "form-action",
        "frame-ancestors",
    }
)
_FLAG_DIRECTIVES: Final = frozenset({"upgrade-insecure-requests", "block-all-mixed-content"})
_TOKEN_DIRECTIVES: Final = frozenset(
    {"sandbox", "report-uri", "report-to", "require-trusted-types-for", "trusted-types", "webrtc"}
)
_KNOWN_DIRECTIVES: Final = _SOURCE_LIST_DIRECTIVES | _FLAG_DIRECTIVES | _TOKEN_DIRECTIVES
# A nonce only means something where a browser reads it: on <script> and <style> elements.
_NONCE_DIRECTIVES: Final = frozenset(
    {"script-src", "script-src-elem", "style-src", "style-src-elem"}
)

_KEYWORDS: Final = frozenset(
    {
        "'self'",
        "'none'",
        "'unsafe-inline'",
        "'unsafe-eval'",
        "'strict-dynamic'",
        "'unsafe-hashes'",
        "'report-sample'",
        "'wasm-unsafe-eval'",
        "'inline-speculation-rules'",
    }
)
_BARE_KEYWORDS: Final = {keyword.strip("'"): keyword for keyword in _KEYWORDS}
_HASH_SOURCE: Final = re.compile(r"'sha(256|384|512)-[A-Za-z0-9+/\-_]+={0,2}'")
_FIXED_NONCE: Final = re.compile(r"'nonce-[A-Za-z0-9+/\-_]+={0,2}'")
_SCHEME_SOURCE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HOST_SOURCE: Final = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.\-]*://)?"  # scheme
    r"(?:\*|(?:\*\.)?[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.?)"  # host, optional leading *.
    r"(?::(?:\d{1,5}|\*))?"  # port
    r"(?:/[A-Za-z0-9\-._~%!$&'()*+=:@/]*)?"  # path (no ';' or ',': they separate)
)
_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~/:=@\-]+")
_DIRECTIVE_NAME: Final = re.compile(r"[a-z0-9\-]+")


class CSPError(ValueError):
    """A Content-Security-Policy that would not protect what it seems to protect."""


SourceValue = Iterable[str] | str | bool


class CSP:
    """A validated Content-Security-Policy, immutable after construction.

    Build it from keyword arguments (underscores become dashes) or parse a header value::

        policy = CSP(
            default_src=["'self'"],
            script_src=["'self'", CSP.NONCE],
            img_src=["'self'", "data:"],
            upgrade_insecure_requests=True,
        )
        policy = CSP.parse("default-src 'self'; script-src 'self' 'nonce-{nonce}'")

    ``CSP.NONCE`` (the text ``'nonce-{nonce}'``) marks where the per-request nonce goes;
    it is allowed in ``script-src``/``style-src`` (and their ``-elem`` variants) only.

    Args:
        directives: Directive name to sources (a list, or one space-separated string);
            ``True`` for flag directives such as ``upgrade-insecure-requests``.
        **more: The same, as keyword arguments (``script_src=[...]``).

    Raises:
        CSPError: An unknown directive, a missing ``default-src``, an unquoted keyword
            (``self``), ``'none'`` mixed with sources, a fixed nonce, a nonce where it
            has no effect, or a source containing separators or control characters.
    """

    NONCE: Final = NONCE_SOURCE

    __slots__ = ("_directives", "_parts_http", "_parts_https", "_text")

    def __init__(
        self, directives: Mapping[str, SourceValue] | None = None, **more: SourceValue
    ) -> None:
        merged: dict[str, SourceValue] = {}
        for name, value in [*(directives or {}).items(), *more.items()]:
            merged[name.replace("_", "-").lower()] = value
        self._directives: dict[str, tuple[str, ...] | bool] = _validate(merged)
        self._text = _render(self._directives, https=True)
        self._parts_https = _split_on_nonce(self._text)
        self._parts_http = _split_on_nonce(_render(self._directives, https=False))

    @classmethod
    def parse(cls, header_value: str) -> CSP:
        """Parse a policy written as a header value (``"default-src 'self'; ..."``).

        Raises:
            CSPError: As for the constructor, or a directive given twice.
        """
        directives: dict[str, SourceValue] = {}
        for raw in header_value.split(";"):
            words = raw.split()
            if not words:
                continue
            name = words[0].lower()
            if name in directives:
                raise CSPError(f"directive {name!r} is given twice (browsers ignore the second)")
            directives[name] = (
                tuple(words[1:]) if words[1:] or name not in _FLAG_DIRECTIVES else True
            )
        return cls(directives)

    @property
    def directives(self) -> Mapping[str, tuple[str, ...] | bool]:
        """The directives, in header order (a copy)."""
        return dict(self._directives)

    @property
    def uses_nonce(self) -> bool:
        """Whether the policy carries the per-request nonce."""
        return len(self._parts_https) > 1

    def sources(self, directive: str) -> tuple[str, ...]:
        """Return the sources of ``directive`` (empty when it is not set)."""
        value = self._directives.get(directive.replace("_", "-").lower(), ())
        return value if isinstance(value, tuple) else ()

    def with_sources(self, **directives: Iterable[str] | str) -> CSP:
        """Return a copy with sources added (``script_src=["https://cdn.example"]``).

        A directive not set yet is created with the given sources; adding to
        ``'none'`` replaces it.
        """
        merged: dict[str, SourceValue] = dict(self._directives)
        for name, value in directives.items():
            key = name.replace("_", "-").lower()
            added = tuple(value.split()) if isinstance(value, str) else tuple(value)
            current = merged.get(key, ())
            existing = tuple(current) if isinstance(current, tuple) else ()
            if existing == ("'none'",):
                existing = ()
            merged[key] = existing + tuple(src for src in added if src not in existing)
        return CSP(merged)

    def replace(self, **directives: SourceValue | None) -> CSP:
        """Return a copy with directives set to new values; ``None`` removes one."""
        merged: dict[str, SourceValue] = dict(self._directives)
        for name, value in directives.items():
            key = name.replace("_", "-").lower()
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return CSP(merged)

    def render(self, nonce: str = "", *, https: bool = True) -> str:
        """Return the header value with ``nonce`` filled in.

        ``upgrade-insecure-requests`` is left out when ``https`` is false: on plain http
        (local development) it would send the browser to an https port that is not there.
        """
        parts = self._parts_https if https else self._parts_http
        return nonce.join(parts)

    def template(self, *, https: bool) -> tuple[bytes, ...]:
        """Return the encoded header value split where the nonce goes (for middleware)."""
        parts = self._parts_https if https else self._parts_http
        return tuple(part.encode("ascii") for part in parts)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"CSP.parse({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CSP) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


def _validate(directives: Mapping[str, SourceValue]) -> dict[str, tuple[str, ...] | bool]:
    if "default-src" not in directives:
        raise CSPError(
            "default-src is missing: every fetch directive not named would allow any source; "
            "start from default-src 'self' (or 'none')"
        )
    result: dict[str, tuple[str, ...] | bool] = {}
    # default-src first: readers (and diff tools) find the baseline where they expect it.
    ordered = ["default-src", *(name for name in directives if name != "default-src")]
    for name in ordered:
        value = directives[name]
        if not _DIRECTIVE_NAME.fullmatch(name) or name not in _KNOWN_DIRECTIVES:
            raise CSPError(f"unknown directive {name!r} (a typo? browsers ignore it)")
        if name in _FLAG_DIRECTIVES:
            if not isinstance(value, bool):
                raise CSPError(f"{name} takes no sources; set it to True or leave it out")
            if value:
                result[name] = True
            continue
        if isinstance(value, bool):
            raise CSPError(f"{name} needs sources, not {value!r}")
        sources = tuple(value.split()) if isinstance(value, str) else tuple(value)
        if name in _TOKEN_DIRECTIVES:
            result[name] = _checked_tokens(name, sources)
        else:
            result[name] = _checked_sources(name, sources)
    return result


def _checked_tokens(name: str, tokens: tuple[str, ...]) -> tuple[str, ...]:
    if name != "sandbox" and not tokens:
        raise CSPError(f"{name} needs a value")
    for token in tokens:
        if not _TOKEN.fullmatch(token):
            raise CSPError(f"{name}: {token!r} is not a valid token")
    return tokens


def _checked_sources(name: str, sources: tuple[str, ...]) -> tuple[str, ...]:
    if not sources:
        raise CSPError(f"{name} has no sources; write 'none' to allow nothing")
    seen: list[str] = []
    for source in sources:
        _check_source(name, source)
        if source not in seen:
            seen.append(source)
    if "'none'" in seen and len(seen) > 1:
        raise CSPError(f"{name}: 'none' next to other sources is ignored by browsers; pick one")
    return tuple(seen)


def _check_source(name: str, source: str) -> None:
    if source in _KEYWORDS:
        return
    if source == NONCE_SOURCE:
        if name not in _NONCE_DIRECTIVES:
            raise CSPError(f"{name}: a nonce has no effect here (only on script and style)")
        return
    lowered = source.lower()
    if lowered in _BARE_KEYWORDS:
        raise CSPError(
            f"{name}: {source!r} must be quoted as {_BARE_KEYWORDS[lowered]!r} "
            "(unquoted, it names a host)"
        )
    if lowered.startswith(("nonce-", "sha256-", "sha384-", "sha512-")):
        raise CSPError(f"{name}: {source!r} must be single-quoted")
    if _FIXED_NONCE.fullmatch(source):
        raise CSPError(
            f"{name}: a fixed nonce ({source[:8]}...) is readable by any attacker; "
            f"use CSP.NONCE ({NONCE_SOURCE}) for a fresh nonce per request"
        )
    if _HASH_SOURCE.fullmatch(source):
        return
    if source.startswith("'"):
        raise CSPError(f"{name}: {source!r} is not a CSP keyword")
    if _SCHEME_SOURCE.fullmatch(source) or _HOST_SOURCE.fullmatch(source):
        return
    raise CSPError(
        f"{name}: {source!r} is not a valid source (no spaces, ';', ',' or control characters)"
    )


def _render(directives: Mapping[str, tuple[str, ...] | bool], *, https: bool) -> str:
    parts = []
    for name, value in directives.items():
        if value is True:
            if https or name != "upgrade-insecure-requests":
                parts.append(name)
        elif isinstance(value, tuple):
            parts.append(" ".join((name, *value)) if value else name)
    return "; ".join(parts)


def _split_on_nonce(text: str) -> tuple[str, ...]:
    return tuple(text.split("{nonce}"))
