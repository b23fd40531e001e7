"""Path patterns, written the same way in every hardenkit setting.

A pattern is an exact path (``/docs``), a prefix ending in ``*`` (``/api/reports/*``), or
``*`` alone (every path). ``/auth/*`` matches ``/auth/token`` and ``/auth`` itself, never
``/authority``. Patterns start with ``/`` (or are ``*``); a ``*`` anywhere but at the end
is refused, at startup. Public paths, rate-limit rules and exemptions, webhook paths,
per-route headers and timeouts all match through this one module.

Every pattern matches the **route path**: ``scope["path"]`` without ``scope["root_path"]``,
the path Starlette routes on. Under ``uvicorn --root-path /svc`` or inside
``Mount("/v1", app)`` the server or router puts the prefix in both, and ``/healthz``
means the app's health route wherever the app is mounted. :func:`route_path` derives it
once per request; every layer reads it from there.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar
from urllib.parse import unquote

from starlette.types import Scope

__all__ = [
    "PathPatterns",
    "PathTable",
    "check_pattern",
    "normalized_path",
    "path_spellings",
    "route_path",
]

T = TypeVar("T")

_ROUTE_PATH_KEY = "hardenkit.route_path"


def route_path(scope: Scope) -> str:
    """Return the path the app routes on: ``scope["path"]`` minus ``scope["root_path"]``.

    The same rule as Starlette's router (``starlette._utils.get_route_path``): the root
    path is removed only where it ends at a segment boundary, so ``root_path="/v1"``
    leaves ``/v10/items`` as it is. Derived once per request and kept in the scope, keyed
    by the ``(path, root_path)`` it came from, so a router that changes either (a
    ``Mount`` below this app) gets a fresh answer rather than a stale one.
    """
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    cached = scope.get(_ROUTE_PATH_KEY)
    if cached is not None and cached[0] == path and cached[1] == root_path:
        derived: str = cached[2]
        return derived
    derived = path
    if root_path and path.startswith(root_path):
        if path == root_path:
            derived = ""
        elif path[len(root_path)] == "/":
            derived = path[len(root_path) :]
    scope[_ROUTE_PATH_KEY] = (path, root_path, derived)
    return derived


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is well formed, else raise ``ValueError`` saying why."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a path pattern must be a non-empty string")
    if pattern != "*" and not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r}: paths start with '/' (or are '*')")
    if "*" in pattern[:-1]:
        raise ValueError(f"path pattern {pattern!r}: '*' is only allowed at the end")
    return pattern


class PathTable(Generic[T]):
    """The value of the most specific pattern matching a path: exact first, then longest prefix.

    Args:
        entries: Pattern to value.
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, entries: Mapping[str, T] | None = None) -> None:
        exact: dict[str, T] = {}
        prefixes: list[tuple[str, T]] = []
        for pattern, value in (entries or {}).items():
            check_pattern(pattern)
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                prefixes.append((prefix, value))
                if len(prefix) > 1 and prefix.endswith("/"):
                    exact.setdefault(prefix[:-1], value)  # "/auth/*" covers "/auth"
            else:
                exact[pattern] = value
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._exact = exact
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def get(self, path: str, default: T) -> T:
        """Return the value for ``path``, or ``default`` when no pattern matches."""
        if path in self._exact:
            return self._exact[path]
        for prefix, value in self._prefixes:
            if path.startswith(prefix):
                return value
        return default


class PathPatterns:
    """A set of path patterns; :meth:`matches` says whether a path is in it.

    Args:
        patterns: Exact paths, or prefixes ending in ``*``.
        any_case: Match the path as sent and every path a router or a middleware inside
            the stack might serve it as (:func:`path_spellings`): in any letter case,
            decoded again, with its dot segments resolved, repeated slashes merged and
            a trailing slash dropped. For the settings that add a check (signed
            webhooks, API-key paths, the paths a limit applies to): a router that
            matches any case (a FastAPI ``route_class``, ``re.IGNORECASE``, a lowercasing
            middleware) must not serve ``/WEBHOOKS/pay`` unchecked, nor a path
            normalizer ``/docs/../webhooks/pay`` or ``/public/../auth/token``. A path
            longer than 4096 characters with an escape, a dot segment, a repeated slash
            or a backslash is taken to match: spelling it out would cost more than it
            guards (its case, NFKC and trailing slash are still spelled out). Never for
            the ones that remove a check (public, exempt): there, another spelling stays
            checked.
    """

    __slots__ = ("_any_case", "_exact", "_prefixes", "patterns")

    def __init__(self, patterns: Iterable[str], *, any_case: bool = False) -> None:
        self.patterns = tuple(check_pattern(pattern) for pattern in patterns)
        self._any_case = any_case
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in (_fold(p) for p in self.patterns) if any_case else self.patterns:
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                prefixes.append(prefix)
                if len(prefix) > 1 and prefix.endswith("/"):
                    exact.add(prefix[:-1])
            else:
                exact.add(pattern)
                if any_case:  # "/hooks/pay/" also guards "/hooks/pay", as a router may
                    exact.add(normalized_path(pattern))
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Return whether ``path`` matches one of the patterns."""
        if self._any_case:
            ascii_only = path.isascii()
            if not ascii_only:  # _fold(), inline: every request's path comes here
                path = path.translate(_DOTTED_AND_DOTLESS_I)
            path = path.casefold()
            if path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes)):
                return True
            # Only such a path has another spelling: a letter beyond ASCII, a dot segment,
            # a repeated or a trailing slash (or a dot file: not worth telling apart), an
            # escape, a backslash.
            if ascii_only and not (
                "/." in path or "//" in path or path[-1:] == "/" or "%" in path or "\\" in path
            ):
                return False
            if len(path) > _MAX_SPELLED and (
                "%" in path or "/." in path or "//" in path or "\\" in path
            ):
                return True  # fail closed: spelling it out would cost more than it guards
            exact, prefixes = self._exact, self._prefixes
            return any(
                spelling in exact or (bool(prefixes) and spelling.startswith(prefixes))
                for spelling in path_spellings(path)
            )
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    __call__ = matches


# re.IGNORECASE matches "i" to the dotted capital I and the dotless i, which casefold()
# keeps apart (an attacker round's /webhooks/g\u0131thub ran unsigned).
_DOTTED_AND_DOTLESS_I = str.maketrans({"\u0130": "i", "\u0131": "i"})
_MAX_DECODES = 3
_MAX_ROOT_SEGMENTS = 8
# A longer path that has another spelling is taken to match the patterns that add a
# check: spelling it out costs a pass per form, on the event loop, before auth. No
# route's path is that long; an attacker's may be.
_MAX_SPELLED = 4096


def _fold(path: str) -> str:
    """``path`` in one letter case, as any case-insensitive router compares it.

    casefold, not lower: a router that folds case maps the long s (U+017F) to "s" too
    (an attacker round's /webhook\u017f/pay ran unsigned).
    """
    if not path.isascii():
        path = path.translate(_DOTTED_AND_DOTLESS_I)
    return path.casefold()


def path_spellings(path: str) -> list[str]:
    """The paths a router or a middleware inside the stack might serve ``path`` as.

    Each in one letter case: ``path`` decoded again (up to three times), with
    backslashes as slashes, in NFKC, then each normalized (:func:`normalized_path`). A
    normalization that climbs above the root (``/webhooks/../../svc/webhooks/pay``)
    also gives its tails without the first one to eight segments: a middleware that
    normalizes the full path, root path included, lands on whichever of them its router
    then serves (a root path deeper than eight segments is not foreseen). Linear in the
    path's length: a long path costs no more than a few passes over it.
    """
    forms = [path]
    decoded = path
    for _ in range(_MAX_DECODES):
        if "%" not in decoded:
            break
        decoded = _fold(unquote(decoded))
        forms.append(decoded)
    for form in list(forms):
        if "\\" in form:
            forms.append(form.replace("\\", "/"))
        if not form.isascii():
            forms.append(_fold(unicodedata.normalize("NFKC", form)))
    spellings: list[str] = []
    for form in dict.fromkeys(forms):
        normal, climbed = _normalized(form)
        spellings.append(normal)
        if climbed:
            # Each tail is a slice: bounded in number, so never quadratic in the length.
            start = 0
            for _ in range(_MAX_ROOT_SEGMENTS):
                start = normal.find("/", start + 1)
                if start < 0:
                    break
                spellings.append(normal[start:])
    return spellings


def normalized_path(path: str) -> str:
    """``path`` as a normalizing router or middleware would route it (RFC 3986 5.2.4).

    Dot segments resolved (``..`` never above the root), repeated slashes merged, a
    trailing slash dropped: ``/public/../auth//token/`` is ``/auth/token``.
    """
    return _normalized(path)[0]


def _normalized(path: str) -> tuple[str, bool]:
    """:func:`normalized_path`, and whether a ``..`` would have climbed above the root."""
    segments: list[str] = []
    climbed = False
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
            else:
                climbed = True
        elif segment not in ("", "."):
            segments.append(segment)
    return "/" + "/".join(segments), climbed
